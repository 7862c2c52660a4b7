"""Save/load round trips: model, processor, LoRA adapters, and remote code without the package installed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

import modeling_gaze2report
from modeling_gaze2report import Gaze2ReportForConditionalGeneration
from modeling_gaze2report.lora import apply_lora, lora_target_regex
from modeling_gaze2report.presets import build_from_preset


def test_model_round_trip_gives_identical_logits(tiny_model, tiny_processor, tmp_path, xray):
    inputs = tiny_processor(images=[xray], reports=["Small left effusion."], fixations=[[(10.0, 20.0, 0.4)]])
    with torch.no_grad():
        expected = tiny_model(**inputs)
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    for loader in (Gaze2ReportForConditionalGeneration, AutoModelForImageTextToText):
        loaded = loader.from_pretrained(tmp_path).eval()
        with torch.no_grad():
            got = loaded(**inputs)
        torch.testing.assert_close(got.logits, expected.logits)
        torch.testing.assert_close(got.scanpath_loss, expected.scanpath_loss)


def test_saved_directory_is_a_hub_repository(tiny_model, tiny_processor, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_gaze2report.Gaze2ReportConfig",
        "AutoModel": "modeling_gaze2report.Gaze2ReportModel",
        "AutoModelForImageTextToText": "modeling_gaze2report.Gaze2ReportForConditionalGeneration",
    }
    assert config["custom_pipelines"]["gaze2report"]["impl"] == "pipeline_gaze2report.Gaze2ReportPipeline"
    # every remote-code file of the package (the flat *_gaze2report.py files and what they import) is exported: the
    # model's and processor's by transformers, the pipeline's by ours; nothing else of the package
    package = Path(modeling_gaze2report.__file__).parent
    remote_files = {path.name for path in package.glob("*_gaze2report.py")} | {"observations.py", "files.py"}
    assert {path.name for path in tmp_path.glob("*.py")} == remote_files
    assert not list(tmp_path.glob(".*.tmp")), "the copies are written atomically"
    processor_config = json.loads((tmp_path / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_gaze2report.Gaze2ReportProcessor"


REMOTE_SCRIPT = r"""
import importlib.abc, json, sys
class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "modeling_gaze2report":
            raise ImportError("modeling_gaze2report is not installed here")
sys.meta_path.insert(0, BlockPackage())
import numpy as np, torch
from PIL import Image
from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor, pipeline
directory, image_path = sys.argv[1], sys.argv[2]
try:
    import modeling_gaze2report
    raise SystemExit("the package should not be importable in this process")
except ImportError:
    pass
model = AutoModelForImageTextToText.from_pretrained(directory, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(directory, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
inputs = processor(images=[image_path], reports=["Small left effusion."], fixations=[[(10.0, 20.0, 0.4)]])
with torch.no_grad():
    logits = model(**inputs).logits
pipe = pipeline(model=directory, trust_remote_code=True)
result = pipe(image_path, max_new_tokens=3)
print(json.dumps({"model": type(model).__module__, "base": type(base).__name__, "logits": logits.tolist(),
                  "result": result}))
"""


@pytest.mark.slow
def test_remote_code_loads_without_the_package(tiny_model, tiny_processor, tmp_path, xray):
    directory, image_path = tmp_path / "model", tmp_path / "chest.png"
    Image.fromarray(xray).save(image_path)
    tiny_model.save_pretrained(directory)
    tiny_processor.save_pretrained(directory)
    inputs = tiny_processor(images=[str(image_path)], reports=["Small left effusion."], fixations=[[(10.0, 20.0, 0.4)]])
    with torch.no_grad():
        expected = tiny_model(**inputs).logits
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(directory), str(image_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output["model"].startswith("transformers_modules.")
    assert output["base"] == "Gaze2ReportModel"
    torch.testing.assert_close(torch.tensor(output["logits"]), expected)
    [result] = output["result"]
    assert isinstance(result["report"], str) and len(result["scanpath"]) >= 1


def test_lora_targets_only_the_language_model(tiny_model):
    peft_model = apply_lora(tiny_model, r=4)
    lora_layers = [name for name, _ in peft_model.named_modules() if name.endswith("lora_A")]
    assert lora_layers and all(".language_model." in name for name in lora_layers)
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    for part in ("scanpath_predictor", "gaze_encoder", "projector"):
        assert any(part in name for name in trainable), part
    assert not any("vision_tower" in name for name in trainable)
    assert not any(".language_model." in name and "lora_" not in name for name in trainable)
    assert "language_model" in lora_target_regex(tiny_model)


def test_lora_regex_rejects_unknown_targets(tiny_model):
    with pytest.raises(ValueError, match="names a layer of the language model"):
        lora_target_regex(tiny_model, ["not_a_layer"])


def test_adapters_save_reload_and_merge_with_identical_outputs(tiny_processor, tmp_path, xray):
    from peft import PeftModel

    torch.manual_seed(0)
    model, _ = build_from_preset("tiny")
    peft_model = apply_lora(model, r=4)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name or "modules_to_save" in name:
            torch.nn.init.normal_(parameter, std=0.05)  # as if trained
    peft_model.eval()
    inputs = tiny_processor(images=[xray], reports=["Small left effusion."], fixations=[[(10.0, 20.0, 0.4)]])
    with torch.no_grad():
        expected = peft_model(**inputs).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    torch.manual_seed(0)
    fresh, _ = build_from_preset("tiny")
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected)
        merged = reloaded.merge_and_unload().eval()
        torch.testing.assert_close(merged(**inputs).logits, expected, rtol=1e-4, atol=1e-4)
    merged.save_pretrained(tmp_path / "merged")
    again = Gaze2ReportForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, expected, rtol=1e-4, atol=1e-4)
