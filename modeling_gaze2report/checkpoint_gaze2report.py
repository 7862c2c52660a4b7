"""Gaze2Report checkpoints: strict loading (safetensors, the model type, no missing or non-finite weight), the export
of the pipeline's code beside the weights, and models built around pretrained backbones."""

from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedConfig
from transformers.dynamic_module_utils import get_relative_import_files

from .configuration_gaze2report import Gaze2ReportConfig
from .files import write_atomically
from .vision_gaze2report import load_vision_weights

HUB_OPTIONS = ("revision", "token", "local_files_only", "cache_dir")  # what reading a config from the Hub takes


def save_pipeline_code(config: Gaze2ReportConfig, save_directory) -> None:
    """Copies the code of the pipelines the config declares (`custom_pipelines`: the pipeline module and its relative
    imports) into `save_directory`, each file written atomically. transformers' `save_pretrained` copies the model's
    own code only, and the pipeline stands above the model."""
    for entry in config.to_dict()["custom_pipelines"].values():
        module_file = Path(__file__).with_name(entry["impl"].split(".")[0] + ".py")
        for source in [module_file, *get_relative_import_files(str(module_file))]:
            code = Path(source).read_bytes()
            write_atomically(Path(save_directory) / Path(source).name, lambda stream: stream.write(code), binary=True)


def check_checkpoint_config(pretrained_model_name_or_path, **kwargs) -> None:
    """Refuses, with a ValueError naming it, a model folder or Hub id that is no Gaze2Report checkpoint: a path to
    no folder, no readable config.json (an unreachable or malformed Hub id, a broken file), or a config whose
    `model_type` is not "gaze2report". Of `kwargs`, the Hub options revision, token, local_files_only and cache_dir
    are used."""
    hub_options = {name: kwargs[name] for name in HUB_OPTIONS if name in kwargs}
    path = str(pretrained_model_name_or_path)
    if not Path(path).exists() and (Path(path).is_absolute() or path.startswith((".", "~")) or path.count("/") > 1):
        raise ValueError(f"{path}: no such model folder (nor a Hub model id, which reads 'name' or 'owner/name')")
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(path, **hub_options)
    except Exception as error:  # an unreachable or malformed Hub id, a folder without config.json, a broken one
        raise ValueError(
            f"{path}: no Gaze2Report config could be read (a model folder holding config.json, or a Hub model id): "
            f"{error}"
        ) from error
    if "model_type" not in config_dict:
        raise ValueError(f"{path}: no config.json with a model_type was found; it holds no Gaze2Report model")
    if config_dict["model_type"] != Gaze2ReportConfig.model_type:
        raise ValueError(
            f"{path}: its config's model_type is {config_dict['model_type']!r}, not "
            f"{Gaze2ReportConfig.model_type!r}: it holds no Gaze2Report model"
        )


def pickled_weight_files(model_directory) -> list[str]:
    """The names of the pickled weight files (`pytorch_model*.bin`, as `save_pretrained(safe_serialization=False)`
    writes them) of a local model folder that holds no safetensors weights; empty otherwise (a Hub model id too)."""
    directory = Path(model_directory)
    if not directory.is_dir() or any(directory.glob("*.safetensors")):
        return []
    return sorted(path.name for path in directory.glob("pytorch_model*.bin"))


class Gaze2ReportCheckpointMixin:
    """What transformers lacks for the Gaze2Report models (placed before `PreTrainedModel`): a stricter
    `from_pretrained`, a `save_pretrained` that exports the pipeline's code, and `from_pretrained_backbones`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, allow_missing_weights: bool = False, **kwargs):
        """`PreTrainedModel.from_pretrained`, stricter: safetensors weights only (`use_safetensors=False` opts into
        pickled ones), a config whose `model_type` is "gaze2report", no weight missing from the checkpoint unless
        `allow_missing_weights=True` (they would start random), and no NaN or infinite weight. Each refusal is a
        ValueError naming the checkpoint."""
        kwargs.setdefault("use_safetensors", True)
        if kwargs.get("config") is None:
            check_checkpoint_config(pretrained_model_name_or_path, **kwargs)
        want_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
        except (OSError, RuntimeError, SafetensorError) as error:  # a missing, truncated or mismatched weights file
            if torch.get_default_device().type == "meta":  # transformers' own refusal of a meta-device context
                raise
            pickled = pickled_weight_files(pretrained_model_name_or_path) if kwargs["use_safetensors"] else []
            if pickled:
                raise ValueError(
                    f"{pretrained_model_name_or_path}: the weights do not load: it holds only pickled weights "
                    f"({', '.join(pickled)}), which are refused because unpickling can run code; if you trust their "
                    "source, pass use_safetensors=False (to pipeline(): model_kwargs={'use_safetensors': False})"
                ) from error
            raise ValueError(f"{pretrained_model_name_or_path}: the weights do not load: {error}") from error
        missing = sorted(loading_info["missing_keys"])
        if missing and not allow_missing_weights:
            raise ValueError(
                f"{pretrained_model_name_or_path}: {len(missing)} weights are missing from the checkpoint "
                f"(e.g. {', '.join(missing[:3])}); pass allow_missing_weights=True to start them random"
            )
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(f"{pretrained_model_name_or_path}: the weight {name} holds NaN or infinite values")
        return (model, loading_info) if want_loading_info else model

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained` (which copies the model's code), then the pipeline's code
        (`save_pipeline_code`), so that `pipeline(model=folder, trust_remote_code=True)` runs where the package is
        not installed; `push_to_hub=True` then uploads the whole folder (`repo_id`, default the folder's name)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            save_pipeline_code(self.config, save_directory)
        if push_to_hub:
            self.push_to_hub(kwargs.get("repo_id") or Path(save_directory).name, token=kwargs.get("token"))

    @classmethod
    def from_pretrained_backbones(
        cls,
        vision_model: str | None,
        language_model: str,
        vision_model_kwargs: dict | None = None,
        language_model_kwargs: dict | None = None,
        **config_overrides,
    ) -> "Gaze2ReportCheckpointMixin":
        """Builds a model around pretrained backbones (local paths or Hub ids): the vision tower and the causal LM
        keep their weights; the scanpath predictor, graph network and projector start from random weights.

        `vision_model=None` builds a randomly initialised tower from `config_overrides["vision_config"]` (to train
        from scratch). Composite vision checkpoints (CLIP, SigLIP) give their vision part. `language_model_kwargs`
        go to `AutoModelForCausalLM.from_pretrained` (e.g. `gguf_file`).
        """
        vision_weights = None
        if vision_model is not None:
            vision_checkpoint = AutoModel.from_pretrained(vision_model, **(vision_model_kwargs or {}))
            vision_weights = getattr(vision_checkpoint, "vision_model", vision_checkpoint)
            config_overrides["vision_config"] = getattr(
                vision_checkpoint.config, "vision_config", vision_checkpoint.config
            )
        elif "vision_config" not in config_overrides:
            raise ValueError("vision_model=None needs a vision_config in the config overrides to build the tower from.")
        causal_lm = AutoModelForCausalLM.from_pretrained(language_model, **(language_model_kwargs or {}))
        config = Gaze2ReportConfig(text_config=causal_lm.config, **config_overrides)
        if "image_size" not in config_overrides:
            config.image_size = getattr(config.vision_config, "image_size", config.image_size)
        model = cls(config)
        if vision_weights is not None:
            load_vision_weights(model.model.vision_tower, vision_weights, vision_model)
        model.model.language_model.load_state_dict(causal_lm.base_model.state_dict())
        model.lm_head.load_state_dict(causal_lm.get_output_embeddings().state_dict())
        return model


__all__ = ["Gaze2ReportCheckpointMixin", "check_checkpoint_config", "pickled_weight_files", "save_pipeline_code"]
