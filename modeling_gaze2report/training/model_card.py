"""The model card of a trained model: Hub metadata and what a reader needs before using it."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..files import write_text_atomically


def base_models(config) -> list[str]:
    """The pretrained backbones of a model: their Hub ids, or the folder name of a local checkpoint."""
    names = [sub_config._name_or_path for sub_config in (config.vision_config, config.text_config)]
    return [Path(name).name if Path(name).is_dir() else name for name in names if name]


def write_model_card(directory, config, source: str, data_args, training_args, metrics: dict | None = None) -> None:
    """README.md with Hub metadata (`huggingface_hub.ModelCard`): base models, dataset, the numbers of `metrics` (its
    `model-index`, which the Hub shows as a table), intended use and limits. `source`: the preset the model was built
    from, or how it was given."""
    dataset_name = data_args.data_source if data_args.data_source != "saved" else Path(data_args.data_path).name
    numbers = {name: value for name, value in (metrics or {}).items() if isinstance(value, (int, float))}
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=["gaze2report", "radiology", "chest-x-ray", "report-generation", "eye-tracking", "lora"],
        base_model=base_models(config) or None,
        datasets=[dataset_name],
        model_name="gaze2report",
        eval_results=[
            EvalResult("image-text-to-text", dataset_name, dataset_name, metric_type=name, metric_value=value)
            for name, value in numbers.items()
        ]
        or None,
    )
    if data_args.data_source == "synthetic":
        limits = (
            "Trained on Gaze2Report's synthetic chest X-ray phantoms with simulated radiologist gaze: it has never "
            "seen a real radiograph and its reports on real images are meaningless. It demonstrates the pipeline, "
            "nothing clinical."
        )
    else:
        limits = "Reports can be wrong or incomplete; scanpaths are predictions of one reader population's gaze."
    content = f"""---
{card_data.to_yaml()}
---

# Gaze2Report model

Trained with the Gaze2Report recipe from {source} on `{dataset_name}` (use_gaze={config.use_gaze}, \
use_fixation_findings={config.use_fixation_findings}, gaze_source={data_args.gaze_source}, seed={training_args.seed}).

```python
import modeling_gaze2report  # or trust_remote_code=True where it is not installed
from transformers import pipeline
pipe = pipeline("gaze2report", model="path/to/model")
pipe("chest.dcm")  # [{{"report": ..., "scanpath": [{{"x", "y", "duration"}}, ...]}}]
```

## Intended use

Research on gaze-guided radiology report generation. Not a medical device: never use its reports or scanpaths for \
diagnosis.

## Limits

{limits}
"""
    write_text_atomically(Path(directory) / "README.md", str(ModelCard(content)))
