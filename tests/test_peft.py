"""PEFT with the package's LoRA helper: what trains, save/load, merge/unload, disable_adapter, several named adapters,
and the clear refusals (mixed-adapter batches, weighted combinations)."""

import pytest
import torch
from peft import PeftModel

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration
from modeling_gaze2report.lora import Gaze2ReportLoraModel, apply_lora, lora_config


def fresh_model() -> Gaze2ReportForConditionalGeneration:
    torch.manual_seed(0)
    return Gaze2ReportForConditionalGeneration(Gaze2ReportConfig()).eval()


def perturb_adapter(peft_model, adapter_name: str, seed: int) -> None:
    """Gives the adapter's LoRA layers and fully trained modules non-trivial weights (LoRA starts as the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if f".{adapter_name}." in name or name.endswith(f".{adapter_name}"):
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


@pytest.fixture
def inputs(tiny_processor, xray):
    return tiny_processor(images=[xray, xray[::-1].copy()], reports=["No effusion.", "Small left pleural effusion."])


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_only_lora_layers_and_the_gaze_modules_train():
    peft_model = apply_lora(fresh_model())
    trainable = {name for name, parameter in peft_model.named_parameters() if parameter.requires_grad}
    assert trainable, "something trains"
    for name in trainable:
        assert "lora_" in name or any(
            f"{module}.modules_to_save" in name for module in ("scanpath_predictor", "gaze_encoder", "projector")
        ), name
    assert any("language_model" in name and "lora_A" in name for name in trainable)
    assert not any("vision_tower" in name for name in trainable)


def test_a_saved_adapter_loads_onto_a_fresh_model_with_the_same_outputs(inputs, tmp_path):
    peft_model = apply_lora(fresh_model()).eval()
    perturb_adapter(peft_model, "default", seed=1)
    expected = logits(peft_model, inputs)
    peft_model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    for loader in (Gaze2ReportLoraModel, PeftModel):
        loaded = loader.from_pretrained(fresh_model(), tmp_path).eval()
        torch.testing.assert_close(logits(loaded, inputs), expected)
    assert isinstance(Gaze2ReportLoraModel.from_pretrained(fresh_model(), tmp_path), Gaze2ReportLoraModel)


def test_merge_and_unload_keep_or_drop_the_adapter(inputs):
    base_logits = logits(fresh_model(), inputs)
    peft_model = apply_lora(fresh_model()).eval()
    perturb_adapter(peft_model, "default", seed=1)
    adapted = logits(peft_model, inputs)
    assert not torch.allclose(adapted, base_logits), "the perturbed adapter changes the outputs"
    with peft_model.disable_adapter():
        torch.testing.assert_close(logits(peft_model, inputs), base_logits)
    merged = peft_model.merge_and_unload()
    assert isinstance(merged, Gaze2ReportForConditionalGeneration)
    torch.testing.assert_close(logits(merged, inputs), adapted, rtol=1e-4, atol=1e-4)


def test_unload_drops_the_lora_layers_and_keeps_the_trained_gaze_modules():
    peft_model = apply_lora(fresh_model()).eval()
    perturb_adapter(peft_model, "default", seed=1)
    trained_projector = {
        name: tensor.clone()
        for name, tensor in peft_model.get_base_model().model.projector.modules_to_save["default"].state_dict().items()
    }
    unloaded = peft_model.unload()
    original = fresh_model()
    assert not any("lora_" in name for name in unloaded.state_dict())
    for name, tensor in original.model.language_model.state_dict().items():
        torch.testing.assert_close(unloaded.model.language_model.state_dict()[name], tensor)
    for name, tensor in trained_projector.items():
        torch.testing.assert_close(unloaded.model.projector.state_dict()[name], tensor)


def test_several_named_adapters_switch_with_set_adapter(inputs):
    model = fresh_model()
    peft_model = apply_lora(model).eval()
    peft_model.add_adapter("second", lora_config(peft_model.get_base_model()))
    perturb_adapter(peft_model, "default", seed=1)
    perturb_adapter(peft_model, "second", seed=2)
    first = logits(peft_model, inputs)
    peft_model.set_adapter("second")
    second = logits(peft_model, inputs)
    assert not torch.allclose(first, second)
    peft_model.set_adapter("default")
    torch.testing.assert_close(logits(peft_model, inputs), first)


def test_mixed_adapter_batches_and_weighted_combinations_are_refused_with_the_reason(inputs, tiny_processor, xray):
    peft_model = apply_lora(fresh_model()).eval()
    peft_model.add_adapter("second", lora_config(peft_model.get_base_model()))
    with pytest.raises(ValueError, match="mixed-adapter batches are not supported: each Gaze2Report adapter"):
        peft_model(**inputs, adapter_names=["default", "second"])
    with pytest.raises(ValueError, match="mixed-adapter batches are not supported"):
        peft_model.generate(
            **tiny_processor(images=[xray, xray]), adapter_names=["default", "second"], max_new_tokens=2
        )
    with pytest.raises(ValueError, match="add_weighted_adapter is not supported"):
        peft_model.add_weighted_adapter(["default", "second"], [0.5, 0.5], "combined")
