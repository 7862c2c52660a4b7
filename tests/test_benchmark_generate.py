"""benchmarks.generate and the generation comparison of benchmarks.common: Gaze2Report's generation against its bare
language model on prompts of the same length, for each batch size and cache, with the ratio pair by pair."""

import json

import pytest
import torch

from benchmarks import common, generate


def test_every_case_is_measured_and_written(tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "generate.json"
    argv = ["--model", str(tiny_model_dir), "--batch_sizes", "1", "2", "--max_new_tokens", "3", "--repeats", "2"]
    report = generate.main([*argv, "--language_model_dtype", "float32", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    assert report["language_model_dtype"]["dtype"] == "float32"
    assert [(case["batch_size"], case["cache"]) for case in report["cases"]] == [
        (1, "dynamic"),
        (1, "static"),
        (2, "dynamic"),
        (2, "static"),
    ]
    for case in report["cases"]:
        assert len(case["throughput_ratio_pairs"]) == 2 and case["throughput_ratio"] > 0
        for name in ("gaze2report", "bare"):
            assert case[name]["tokens_per_second"] > 0 and len(case[name]["whole_run_s"]) == 2
    assert "| 2 | static |" in capsys.readouterr().out


def test_the_bare_model_is_the_same_language_model_on_a_prompt_of_the_same_length(tiny_model_dir):
    model, processor, bare, _ = generate.load_model(tiny_model_dir, "float32", torch.device("cpu"))
    runs = common.make_generation_inputs(model, processor, bare, 2, 0)
    (_, gaze_inputs), (generator, bare_inputs) = runs["gaze2report"], runs["bare"]
    assert generator is bare and gaze_inputs["input_ids"].shape == bare_inputs["input_ids"].shape
    placeholders = gaze_inputs["input_ids"] == model.config.gaze_token_id
    assert placeholders.sum() == 2 * model.config.num_gaze_tokens
    assert not (bare_inputs["input_ids"] == model.config.gaze_token_id).any()
    # the bare model's logits are the Gaze2Report language model's on the same ids
    with torch.no_grad():
        embeddings = model.get_input_embeddings()(bare_inputs["input_ids"])
        expected = model.lm_head(
            model.model.language_model(inputs_embeds=embeddings, attention_mask=bare_inputs["attention_mask"])[0]
        )
        torch.testing.assert_close(bare(**bare_inputs).logits, expected)


def test_a_decode_step_is_the_whole_run_less_the_prefill_per_further_token():
    # medians: whole run 2.0 s for 11 tokens, prefill (one token) 0.2 s
    figures = common.generation_figures([2.4, 2.0, 1.9], [0.2, 0.1, 0.3], batch_size=4, new_tokens=11)
    assert figures["tokens_per_second"] == pytest.approx(4 * 11 / 2.0)
    assert figures["prefill_ms"] == pytest.approx(200.0)
    assert figures["decode_step_ms"] == pytest.approx(1000 * (2.0 - 0.2) / 10)
    assert figures["whole_run_s"] == [2.4, 2.0, 1.9]


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        generate.main(["--model", str(tmp_path), "--batch_sizes", "1"])


@pytest.mark.parametrize(
    "argv",
    [["--max_new_tokens", "1"], ["--batch_sizes", "1", "0"], ["--repeats", "0"], ["--threads", "0"],
     ["--caches", "paged"]],
)  # fmt: skip
def test_bad_arguments_are_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        generate.parse_args(argv)
    assert "error" in capsys.readouterr().err
