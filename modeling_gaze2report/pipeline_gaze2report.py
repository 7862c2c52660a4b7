"""The "gaze2report" pipeline: chest X-ray (DICOM, PNG, JPEG, PIL or array) -> report and predicted scanpath."""

import os

import torch
from transformers import Pipeline, pipeline

from .checkpoint_gaze2report import check_checkpoint_config
from .checks_gaze2report import check_generate_kwargs, check_positive_integer
from .image_loading_gaze2report import load_image
from .inference_gaze2report import check_requested_outputs, generate_with_one_encoding, read_generations
from .modeling_gaze2report import check_processor_fits
from .precision_gaze2report import cast_language_model, resolve_language_model_dtype


class Gaze2ReportPipeline(Pipeline):
    """Writes a report for each chest X-ray and, by default, returns the predicted scanpath in original pixels.

    ```python
    pipe = pipeline("gaze2report", model="path/to/model")          # or pipeline(model=..., trust_remote_code=True)
    pipe("chest.dcm")  # [{"report": "...", "scanpath": [{"x": 812.0, "y": 1030.5, "duration": 0.41}, ...]}]
    pipe(["a.png", "b.dcm"], batch_size=2, max_new_tokens=96, return_scanpath=False)
    pipe("chest.dcm", return_grounding=True)  # adds "grounding": [{"sentence": "...", "fixations": [0, 3]}, ...]
    ```

    `language_model_dtype` (construction only, default "auto"): the language model and its output layer are cast in
    place to bfloat16 where the device multiplies bfloat16 matrices fast and to float32 elsewhere
    (`precision_gaze2report`); a dtype name (float32, bfloat16, float16) casts to that dtype. The rest of the model
    keeps its dtype.

    Keyword arguments of a call: `max_new_tokens` and `generate_kwargs` (a dict) go to `generate` (greedy decoding
    unless generate_kwargs says otherwise); `return_scanpath` (default True; False for a model built with
    use_gaze=False); `return_grounding` (default False; a model whose config `grounds_findings`):
    one entry per generated sentence with the indices into "scanpath" of the fixations that support it
    (`grounding_gaze2report.ground_report` states the rule). Each image gives a list of results, one per returned
    sequence (`num_return_sequences`, best beam first), each with the image's scanpath. Each batch of images is
    encoded once, and the report, the scanpath and the grounding are read from that encoding
    (`inference_gaze2report.generate_with_one_encoding`).
    """

    _load_processor = True
    _load_image_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False

    def __init__(self, model, *args, language_model_dtype: str = "auto", **kwargs):
        if model.config.model_type != "gaze2report":
            raise ValueError(
                f"The gaze2report pipeline got a {model.config.model_type!r} model ({type(model).__name__}), not a "
                "Gaze2Report model"
            )
        super().__init__(model, *args, **kwargs)
        check_processor_fits(self.model.config, self.processor)
        self.language_model_dtype, self.language_model_dtype_reason = resolve_language_model_dtype(
            language_model_dtype, self.model.device
        )
        cast_language_model(self.model, self.language_model_dtype)

    def __call__(self, images, **kwargs):
        if kwargs.get("batch_size") is not None:
            check_positive_integer("batch_size", kwargs["batch_size"])
        if isinstance(images, (list, tuple)) and not images:
            raise ValueError("The gaze2report pipeline got an empty list of images")
        return super().__call__(images, **kwargs)

    def _sanitize_parameters(
        self, max_new_tokens=None, generate_kwargs=None, return_scanpath=None, return_grounding=None, **kwargs
    ):
        if kwargs:
            raise ValueError(
                f"Unknown argument(s) {sorted(kwargs)} for the gaze2report pipeline; it takes max_new_tokens, "
                "generate_kwargs, return_scanpath, return_grounding and batch_size."
            )
        if generate_kwargs is not None and not isinstance(generate_kwargs, dict):
            raise ValueError(f"generate_kwargs must be a dict, got {type(generate_kwargs).__name__}")
        generate_kwargs = dict(generate_kwargs or {})
        if max_new_tokens is not None:
            generate_kwargs["max_new_tokens"] = max_new_tokens
        check_generate_kwargs(generate_kwargs)
        for name, value in (("return_scanpath", return_scanpath), ("return_grounding", return_grounding)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        return_scanpath = self.model.config.use_gaze if return_scanpath is None else return_scanpath
        return_grounding = bool(return_grounding)
        check_requested_outputs(self.model.config, return_scanpath, return_grounding)
        forward_params = {
            "generate_kwargs": generate_kwargs,
            "return_scanpath": return_scanpath,
            "return_grounding": return_grounding,
        }
        return {}, forward_params, {}

    def preprocess(self, image):
        loaded = load_image(image)
        inputs = self.processor(images=[loaded])
        inputs["original_size"] = torch.tensor([loaded.size])  # (1, 2): width, height
        return inputs

    def _forward(self, model_inputs, generate_kwargs=None, return_scanpath=False, return_grounding=False):
        generated = generate_with_one_encoding(
            self.model,
            model_inputs["input_ids"],
            model_inputs["attention_mask"],
            model_inputs["pixel_values"],
            generate_kwargs,
            return_scanpath,
            return_grounding,
        )
        return {**generated, "original_sizes": model_inputs["original_size"]}

    def postprocess(self, model_outputs):
        original_sizes = model_outputs.pop("original_sizes").tolist()
        [results] = read_generations(self.processor, original_sizes=original_sizes, **model_outputs)
        return results


def gaze2report_pipeline(model, **kwargs) -> Gaze2ReportPipeline:
    """`transformers.pipeline("gaze2report", model=model, **kwargs)`, with a model folder or Hub id checked first
    (`check_checkpoint_config`): a missing folder, one without a readable config or one of another model type is a
    ValueError naming it before transformers is asked, whose own answers to these speak of repo ids and
    `trust_remote_code`. `transformers.pipeline` reads the config before any class of this package is consulted, so
    that check can only stand in front of it."""
    if isinstance(model, (str, os.PathLike)):
        check_checkpoint_config(model, **kwargs)
        model = str(model)
    return pipeline("gaze2report", model=model, **kwargs)
