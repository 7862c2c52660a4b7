"""The `gaze2report` command: generate on PNG and DICOM, and the demo's outputs."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from modeling_gaze2report import load_image
from modeling_gaze2report.cli import main


def test_generate_json_on_png_and_dicom_with_overlays(tiny_model_dir, tmp_path, xray, rg1_uncr, capsys):
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    main(
        [
            "generate",
            str(png),
            str(rg1_uncr),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--overlay",
            str(tmp_path / "overlays"),
            "--max-new-tokens",
            "3",
        ]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["image"] for line in lines] == [str(png), str(rg1_uncr)]
    width, height = load_image(rg1_uncr).size
    for line, (w, h) in zip(lines, [(90, 120), (width, height)]):
        assert isinstance(line["report"], str) and line["scanpath"]
        assert all(0 <= p["x"] <= w and 0 <= p["y"] <= h and p["duration"] > 0 for p in line["scanpath"])
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["RG1_UNCR.png", "chest.png"]


def test_generate_plain_text_and_clear_errors(tiny_model_dir, tmp_path, xray, capsys):
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    main(["generate", str(png), "--model", str(tiny_model_dir), "--max-new-tokens", "2"])
    assert capsys.readouterr().out.startswith(f"== {png}\n")
    with pytest.raises(SystemExit, match="not found: .*missing.png"):
        main(["generate", str(tmp_path / "missing.png"), "--model", str(tiny_model_dir)])
    with pytest.raises(SystemExit, match="is not a directory"):
        main(["generate", str(png), "--model", str(tmp_path / "no-model")])


@pytest.mark.slow
def test_demo_tiny_writes_every_output(tmp_path):
    output = tmp_path / "demo"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "modeling_gaze2report.cli",
            "demo",
            "--preset",
            "tiny",
            "--output",
            str(output),
            "--num-studies",
            "16",
            "--steps",
            "4",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    records = [json.loads(line) for line in (output / "reports.jsonl").read_text().splitlines()]
    assert records and set(records[0]) >= {"id", "generated_report", "reference_report", "predicted_scanpath"}
    metrics = json.loads((output / "metrics.json").read_text())
    assert {
        "chexpert_micro_f1",
        "chexpert_exact_match",
        "laterality_accuracy",
        "bleu_4",
        "distinct_report_fraction",
        "lm_loss_own_image",
        "lm_loss_swapped_image",
        "visual_attention_share",
    } <= set(metrics["headline"])
    assert metrics["timings"]["total_s"] > 0
    assert len(list((output / "overlays").glob("*.png"))) == len(records)
    assert (output / "model" / "model.safetensors").is_file()
    # the literature's table of `gaze2report evaluate`, with intervals, on the same reports
    assert metrics["table"]["columns"]["BLEU-4"]["value"] == metrics["headline"]["bleu_4"]
    assert metrics["table"]["num_studies"] == len(records)
    assert "| 95% interval |" in (output / "metrics.md").read_text()
    card = (output / "model" / "README.md").read_text()
    assert "chexpert_micro_f1" in card
