"""benchmarks.gpu_check: the dry run (tiny shapes, CPU, float32) goes through every section's code path and writes
the keys a GPU run writes, with its correctness checks passed; without CUDA a real run is refused before it writes
anything; the helpers that lengthen the batches keep the two models' language-model work equal; a device gets the
data-sheet figures of the row its name matches; the HBM limit counts the bytes a decode step reads."""

import json
import math

import pytest
import torch

from benchmarks import common, gpu_check


@pytest.mark.slow
def test_dry_run_fills_every_section_with_figures(tmp_path, capsys):
    output = tmp_path / "results" / "gpu_check.json"
    report = gpu_check.main(["--dry-run", "--output", str(output)])
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(report))
    assert list(written) == ["setup", *gpu_check.SECTIONS]
    for name in gpu_check.SECTIONS:
        assert written[name]["status"] == "ok", written[name].get("traceback_tail")
        assert "error" not in written[name] and written[name]["wall_s"] > 0
    setup, scale = written["setup"], gpu_check.DRY_RUN_SCALE
    assert setup["dry_run"] and setup["dtype"] == "float32" and setup["attn_implementation"] == "sdpa"
    assert setup["sections_selected"] == list(gpu_check.SECTIONS)
    assert setup["device"]["hbm_bytes_per_second"] is None and setup["device"]["bf16_dense_flops_per_second"] is None

    correctness = written["correctness"]
    assert correctness["all_passed"]
    assert correctness["reload_same_logits"]["passed"] and correctness["reload_same_logits"]["message"] is None
    greedy = correctness["greedy_identical_across_caches"]
    assert greedy["passed"] and greedy["matching_token_fraction"] == 1.0
    assert greedy["first_differing_step"] == [None] * scale["generate_batch_size"]
    finite = correctness["forward_backward_finite"]
    assert finite["passed"] and math.isfinite(finite["loss"]) and not finite["tensors_with_non_finite_gradient"]

    gaze_modules = written["gaze_modules"]
    assert gaze_modules["images_per_second"] > gaze_modules["images_per_second_with_projector"] > 0
    assert gaze_modules["batch_size"] == scale["gaze_batch_size"]
    assert {"scanpath_predictor", "gaze_encoder", "projector"} <= set(gaze_modules["median_ms"])

    for name, runs in (
        ("train_step_1b", ["no_checkpointing"]),
        ("train_step_8b", ["no_checkpointing", "activation_checkpointing"]),
    ):
        section = written[name]
        assert list(section["runs"]) == runs
        assert [section["batch_size"], section["sequence_length"]] == [
            scale["train_batch_size"],
            scale["train_sequence_length"],
        ]
        assert section["model_flops"]["flops_per_step"] > 0 and "6 * N_body" in section["model_flops"]["formula"]
        for run in section["runs"].values():
            work = run["same_language_model_work"]
            assert work["sequence_shape"] == [scale["train_batch_size"], scale["train_sequence_length"]]
            assert work["scored_positions"] == section["model_flops"]["scored_tokens"]
            assert len(run["overhead_ratio_pairs"]) == scale["train_steps"] and run["overhead_ratio"] > 0
            for model in ("gaze2report", "baseline"):
                figures = run[model]
                assert figures["tokens_per_second"] > 0 and all(map(math.isfinite, figures["losses"]))
                assert figures["model_flops_per_second"] > 0 and figures["mfu"] is None  # no data-sheet peak on a CPU
                assert figures["peak_memory_mb"] >= 0 and figures["parameter_mb"] > 0
        assert "forward_breakdown_ms" in section["runs"]["no_checkpointing"]["gaze2report"]
    assert written["train_step_8b"]["text_model"]["tie_word_embeddings"] is False

    for name in ("generate_1b", "generate_8b"):
        section = written[name]
        assert section["prompt_length"] == scale["prompt_length"] and list(section["caches"]) == ["dynamic", "static"]
        for case in section["caches"].values():
            assert case["gaze2report"]["tokens_per_second"] > 0 and case["bare"]["tokens_per_second"] > 0
            assert len(case["throughput_ratio_pairs"]) == scale["generate_repeats"]
            assert case["decode_compiled"] == {"gaze2report": False, "bare": False}  # generate compiles on CUDA only
            limit = case["hbm_limit"]
            assert limit["weight_bytes"] > 0 and limit["kv_cache_bytes"] > 0 and limit["limit_ms_per_step"] is None
        static_positions = section["caches"]["static"]["hbm_limit"]["cached_positions"]
        assert static_positions == scale["prompt_length"] + scale["new_tokens"]

    printed = capsys.readouterr().out
    assert "[gpu_check] train 8b activation_checkpointing:" in printed
    assert "[gpu_check] done in" in printed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
def test_without_cuda_a_real_run_exits_with_a_message_and_writes_nothing(tmp_path):
    output = tmp_path / "gpu_check.json"
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--output", str(output)])
    message = exit_info.value.code  # a message, so the process exits with status 1
    assert isinstance(message, str) and "needs a CUDA GPU" in message and "--dry-run" in message
    assert list(tmp_path.iterdir()) == []


def test_lengthened_batches_keep_prompts_and_labels():
    gaze_id, ordinary_id, eos, pad = 7, 5, 2, 0
    prompt = [gaze_id, gaze_id, 11, 12]
    rows = [prompt + [21, 22, eos, pad], prompt + [31, 32, 33, eos]]  # reports of 2 and 3 tokens, + EOS
    input_ids = torch.tensor(rows)
    labels = torch.tensor([[-100] * 4 + [21, 22, eos, -100], [-100] * 4 + [31, 32, 33, eos]])
    attention_mask = torch.tensor([[1] * 7 + [0], [1] * 8])
    gaze_batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values": torch.zeros(2, 3, 4, 4),
    }
    baseline_batch = {
        "input_ids": input_ids.masked_fill(input_ids == gaze_id, ordinary_id),
        "attention_mask": attention_mask,
        "labels": labels,
    }
    gaze, baseline = (
        common.extend_to_sequence_length(batch, 12, len(prompt)) for batch in (gaze_batch, baseline_batch)
    )
    assert gaze["input_ids"].tolist() == [prompt + [21, 22, eos] * 2 + [21, 22], prompt + [31, 32, 33, eos] * 2]
    assert torch.equal(gaze["labels"], baseline["labels"]) and (gaze["labels"][:, :4] == -100).all()
    assert torch.equal(gaze["labels"][:, 4:], gaze["input_ids"][:, 4:]) and gaze["attention_mask"].all()
    assert torch.equal(baseline["input_ids"][:, :4], torch.tensor([[ordinary_id] * 2 + [11, 12]] * 2))
    assert gaze["pixel_values"] is gaze_batch["pixel_values"]
    with pytest.raises(ValueError, match="leaves no report tokens"):
        common.extend_to_sequence_length(gaze_batch, 4, len(prompt))

    prompts = {"input_ids": torch.tensor([prompt, prompt]), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    extended = common.extend_prompt(prompts, 9, [40, 41])
    assert extended["input_ids"].tolist() == [[40, 41, 40, 41, 40] + prompt] * 2 and extended["attention_mask"].all()
    with pytest.raises(ValueError, match="more than the 3 asked for"):
        common.extend_prompt(prompts, 3, [40])


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--threads", "0"], ["--sections", "everything"], []])
def test_bad_arguments_are_rejected(argv, tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(argv + (["--output", str(tmp_path / "out.json")] if argv else []))
    assert "error" in capsys.readouterr().err


def test_a_directory_as_output_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--dry-run", "--output", str(tmp_path)])
    assert f"got the directory {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, table_name",
    [
        ("NVIDIA H200", "H200"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),  # an H100, but not the SXM card's bandwidth
        ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
        ("NVIDIA A100-SXM4-40GB", None),  # an A100 of other memory: no figures rather than the 80GB card's
        ("cpu (x86_64, AVX2)", None),
    ],
)
def test_a_device_gets_the_figures_of_the_row_its_name_matches_and_none_otherwise(name, table_name):
    spec = gpu_check.gpu_spec(name)
    assert spec["device_name"] == name and spec["table_name"] == table_name
    row = {row[1]: row for row in gpu_check.GPU_SPECS}.get(table_name, (None, None, None, None))
    assert (spec["hbm_bytes_per_second"], spec["bf16_dense_flops_per_second"]) == row[2:]


@pytest.mark.parametrize("tied", [True, False])
def test_the_hbm_limit_counts_the_weights_read_and_the_kv_cache(tied):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    bare = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    limit = gpu_check.hbm_limit(bare, batch_size=3, cached_positions=10, bandwidth=1e9)
    all_bytes = 2 * sum(p.numel() for p in bare.parameters())  # tied weights counted once
    embedding_bytes = 2 * 100 * 32
    assert limit["weight_bytes"] == (all_bytes if tied else all_bytes - embedding_bytes)
    assert limit["kv_cache_bytes"] == 2 * 2 * 3 * 2 * (32 // 4) * 10 * 2  # K and V, layers, batch, heads, dim, 10, bf16
    assert limit["limit_ms_per_step"] == pytest.approx(1000 * (limit["weight_bytes"] + limit["kv_cache_bytes"]) / 1e9)
    assert gpu_check.hbm_limit(bare, 3, 10, None)["limit_ms_per_step"] is None
