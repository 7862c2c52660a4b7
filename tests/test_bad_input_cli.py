"""Bad input at the command line: every entry (`gaze2report ...`, examples/*.py) answers a user error with one line
`<program>: error: <message>` on stderr and exit code 2, unexpected errors keep their traceback; a command that
replaces its output folder replaces only a folder it wrote; the ablation's results file and budget."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from modeling_gaze2report.cli import main, overlay_paths, run_command
from modeling_gaze2report.demo import run as demo_run
from modeling_gaze2report.files import OUTPUT_MARKER, check_output_folder, mark_output_folder, write_output_folder
from modeling_gaze2report.training import main as train_main

from .conftest import REPOSITORY_ROOT, load_script


def error_line(capsys, call) -> str:
    """Runs `call()`, which must end the program with exit code 2 and no traceback; returns the one error line, the
    last it printed on stderr (before it: argparse's usage, or progress bars of the work done before the error)."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert sum(": error: " in line for line in captured.err.splitlines()) == 1, captured.err
    return captured.err.splitlines()[-1]


def test_a_user_error_is_one_line_and_exit_code_2_and_any_other_keeps_its_traceback(capsys):
    def bad_value(argv):
        raise ValueError(f"--size must be >= 1,\n  got {argv[0]}")

    line = error_line(capsys, lambda: run_command(bad_value, "tool", ["0"]))
    assert line == "tool: error: --size must be >= 1, got 0"
    for error in (FileNotFoundError("no x"), PermissionError("read-only"), json.JSONDecodeError("bad", "{", 1)):

        def fail(argv, error=error):
            raise error

        assert error_line(capsys, lambda: run_command(fail, "tool")) == f"tool: error: {error}"

    def bug(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_command(bug, "tool")
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--help"])
    assert exit_info.value.code == 0


@pytest.mark.parametrize(
    "option, message",
    [
        ("--batch-size", "gaze2report: error: --batch-size must be an integer >= 1, got 0"),
        ("--max-new-tokens", "gaze2report: error: --max-new-tokens must be an integer >= 1, got 0"),
    ],
)
def test_generate_with_a_zero_setting_is_refused_before_loading_the_model(tmp_path, xray, capsys, option, message):
    Image.fromarray(xray).save(tmp_path / "x.png")
    argv = ["generate", str(tmp_path / "x.png"), "--model", str(tmp_path / "no-model"), option, "0"]
    line = error_line(capsys, lambda: main(argv))
    assert line == message


def test_generate_with_an_unreadable_image_among_several_names_it(tiny_model_dir, tmp_path, xray, capsys):
    Image.fromarray(xray).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("not an image")
    images = [str(tmp_path / "good.png"), str(tmp_path / "bad.png")]
    argv = ["generate", *images, "--model", str(tiny_model_dir), "--max-new-tokens", "2"]
    line = error_line(capsys, lambda: main(argv))
    assert line.startswith("gaze2report: error: Cannot read image file ") and str(tmp_path / "bad.png") in line


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--preset", "bogus"], "The demo runs the presets tiny, demo-smollm2; got 'bogus'"),
        (["--preset", "tiny", "--num-studies", "3"], "The demo needs at least 10 studies"),
    ],
)
def test_demo_with_a_bad_budget(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.setattr(demo_run, "make_synthetic_dataset", lambda *a, **k: pytest.fail("the demo started working"))
    line = error_line(capsys, lambda: main(["demo", *arguments, "--output", str(tmp_path / "demo")]))
    assert line.startswith(f"gaze2report: error: {message}")
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--stages", "foo"], "Unknown stage(s) ['foo'] in --stages 'foo'"),
        (["--data_source", "bogus"], "Unknown data_source 'bogus'"),
        (["--config_overrides", "{bad"], "--config_overrides is not valid JSON"),
    ],
)
def test_training_arguments(tmp_path, capsys, arguments, message):
    argv = ["--preset", "tiny", "--output_dir", str(tmp_path / "run"), *arguments]
    line = error_line(capsys, lambda: run_command(train_main, "train.py", argv))
    assert line.startswith(f"train.py: error: {message}")


def test_gaze2report_train_speaks_like_the_script(tmp_path, capsys):
    argv = ["train", "--preset", "tiny", "--output_dir", str(tmp_path / "run"), "--data_source", "bogus"]
    assert error_line(capsys, lambda: main(argv)).startswith("gaze2report: error: Unknown data_source 'bogus'")


@pytest.mark.slow
def test_the_training_script_itself_speaks_like_a_command(tmp_path):
    completed = subprocess.run(
        [sys.executable, "examples/train.py", "--preset", "tiny", "--stages", "foo", "--output_dir", str(tmp_path)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert completed.returncode == 2
    assert completed.stderr.splitlines()[-1].startswith("train.py: error: Unknown stage(s) ['foo']")
    assert "Traceback" not in completed.stderr


def test_app_port_out_of_range_is_refused_before_any_setup(capsys, monkeypatch):
    from modeling_gaze2report import app

    monkeypatch.setattr(app, "Gaze2ReportApp", lambda *a, **k: pytest.fail("the app was built"))
    line = error_line(capsys, lambda: main(["app", "--model", "m", "--port", "70000"]))
    assert "argument --port: must be a port number from 1 to 65535, got 70000" in line


def test_app_with_a_missing_model_is_one_line(tmp_path, capsys):
    line = error_line(capsys, lambda: main(["app", "--model", str(tmp_path / "missing")]))
    assert line.startswith("gaze2report: error: ") and "missing is not a saved Gaze2Report model directory" in line


def test_overlays_of_images_whose_names_collide_get_distinct_files(tmp_path):
    images = ["a/x.png", "b/x-2.png", "c/x.png", "d/X.png"]
    paths = overlay_paths(images, tmp_path / "overlays")
    assert [path.name for path in paths] == ["x.png", "x-2.png", "x-3.png", "X-4.png"]


def fake_demo_run(output_dir, budget, preset, seed, model_variant, compile_decoder_layers):
    (output_dir / "metrics.json").write_text(json.dumps({"seed": seed}))
    return {"seed": seed}


def folder_contents(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_demo_replaces_only_a_folder_it_marked_and_that_holds_only_what_it_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_run, "run_demo_into", fake_demo_run)
    output = tmp_path / "demo"
    # another project's folder that happens to hold a metrics.json: not taken for an earlier demo run
    output.mkdir()
    (output / "metrics.json").write_text("theirs")
    (output / "notes.txt").write_text("theirs")
    line = error_line(capsys, lambda: main(["demo", "--preset", "tiny", "--output", str(output)]))
    assert "holds no earlier demo run" in line and OUTPUT_MARKER in line
    assert folder_contents(output) == {"metrics.json": b"theirs", "notes.txt": b"theirs"}

    fresh = tmp_path / "fresh"
    demo_run.run_demo(fresh, preset="tiny", seed=0)
    assert json.loads((fresh / OUTPUT_MARKER).read_text()) == {"written_by": "demo", "files": ["metrics.json"]}
    demo_run.run_demo(fresh, preset="tiny", seed=1)  # its own folder: replaced
    assert json.loads((fresh / "metrics.json").read_text()) == {"seed": 1}

    (fresh / "mine.txt").write_text("added by the user")
    with pytest.raises(ValueError, match=r"holds files that demo did not write \(mine.txt\)"):
        demo_run.run_demo(fresh, preset="tiny", seed=2)
    assert (fresh / "mine.txt").read_text() == "added by the user"
    assert json.loads((fresh / "metrics.json").read_text()) == {"seed": 1}
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_a_folder_marked_by_another_command_or_with_a_broken_marker_is_refused(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    mark_output_folder(folder, "evaluate")
    with pytest.raises(ValueError, match="does not mark an earlier demo run"):
        check_output_folder(folder, "--output", "demo")
    (folder / OUTPUT_MARKER).write_text('{"written_by": "de')
    with pytest.raises(ValueError, match=f"{OUTPUT_MARKER} is not a valid output marker"):
        check_output_folder(folder, "--output", "demo")


def test_a_file_put_into_the_output_folder_while_the_command_runs_is_not_deleted(tmp_path):
    folder = tmp_path / "out"

    def write(staging):
        (staging / "result.txt").write_text("new")
        (folder / "mine.txt").write_text("added meanwhile")

    folder.mkdir()
    with pytest.raises(ValueError, match=r"holds no earlier demo run"):
        write_output_folder(folder, "--output", "demo", write)
    assert folder_contents(folder) == {"mine.txt": b"added meanwhile"}
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_the_evaluation_refuses_a_foreign_output_folder_before_any_work(tmp_path, capsys):
    evaluate = load_script("examples/evaluate_models.py")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    output = tmp_path / "results"
    output.mkdir()
    (output / "results.json").write_text("another study's")
    argv = ["--model", str(model), "--output", str(output)]
    line = error_line(capsys, lambda: run_command(evaluate.main, "evaluate_models.py", argv))
    assert line.startswith(f"evaluate_models.py: error: --output {output} is not empty and holds no earlier")
    assert (output / "results.json").read_text() == "another study's"


@pytest.fixture(scope="module")
def gaze_ablation():
    return load_script("examples/gaze_ablation.py")


def ablation_arguments(tmp_path, results, *extra):
    return ["--preset", "tiny", "--num-studies", "20", "--steps", "2", "--seeds", "0", "--variants", "gaze"] + [
        "--output",
        str(tmp_path / "runs"),
        "--results",
        str(results),
        *extra,
    ]


def test_ablation_results_must_be_json_so_the_table_never_overwrites_them(gaze_ablation, tmp_path, capsys):
    results = tmp_path / "results.md"
    line = error_line(capsys, lambda: gaze_ablation.main(ablation_arguments(tmp_path, results)))
    assert "--results must name a .json file" in line
    assert not results.exists()


def test_ablation_resumed_with_another_budget_is_refused(gaze_ablation, tmp_path, monkeypatch):
    monkeypatch.setattr(gaze_ablation, "run_demo", lambda *a, **k: pytest.fail("a run started"))
    results = tmp_path / "ablation.json"
    ran_with = {**demo_run.BUDGETS["tiny"].__dict__, "num_studies": 20, "report_steps": 2}
    run = {"variant": "gaze", "seed": 0, "headline": {"bleu_4": 0.1}, "timings": {"total_s": 60}}
    study = {"preset": "tiny", "budget": ran_with, "runs": [run]}  # a run without its own budget ran with the study's
    results.write_text(json.dumps(study))
    with pytest.raises(ValueError, match=r"another budget \(num_studies 20 there, 24 here\)"):
        gaze_ablation.main(ablation_arguments(tmp_path, results, "--num-studies", "24"))
    assert json.loads(results.read_text()) == study
    # the same budget resumes: the run is already there, nothing runs, the file is rewritten with its summary
    resumed = gaze_ablation.main(ablation_arguments(tmp_path, results))
    assert resumed["runs"] == [{**run, "budget": ran_with}] and (tmp_path / "ablation.md").is_file()


def test_a_truncated_or_incomplete_ablation_results_file_is_named(gaze_ablation, tmp_path, capsys):
    results = tmp_path / "ablation.json"
    results.write_text('{"preset": "tiny", "runs": [')
    line = error_line(
        capsys, lambda: run_command(gaze_ablation.main, "gaze_ablation.py", ablation_arguments(tmp_path, results))
    )
    assert line.startswith(f"gaze_ablation.py: error: {results} is not valid JSON")
    assert results.read_text() == '{"preset": "tiny", "runs": ['
    results.write_text('{"preset": "tiny", "runs": [{"variant": "gaze", "seed": 0}]}')
    with pytest.raises(ValueError, match=r"ablation.json: runs\[0\] lacks headline, timings"):
        gaze_ablation.main(ablation_arguments(tmp_path, results))
