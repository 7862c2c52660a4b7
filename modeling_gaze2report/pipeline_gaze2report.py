"""The "gaze2report" pipeline: chest X-ray (DICOM, PNG, JPEG, PIL or array) -> report and predicted scanpath."""

import torch
from transformers import Pipeline

from .grounding_gaze2report import ground_reports
from .image_loading_gaze2report import load_image
from .precision_gaze2report import cast_language_model, resolve_language_model_dtype

POSITIVE_INTEGER_GENERATE_KWARGS = ("max_new_tokens", "num_beams", "num_return_sequences", "min_new_tokens")


def is_positive_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_generate_kwargs(generate_kwargs: dict) -> None:
    """Rejects the generation settings that must be integers >= 1 (max_new_tokens, num_beams, num_return_sequences,
    min_new_tokens) but are not, naming the setting and the value."""
    for name in POSITIVE_INTEGER_GENERATE_KWARGS:
        if name in generate_kwargs and not is_positive_integer(generate_kwargs[name]):
            raise ValueError(f"{name} must be an integer >= 1, got {generate_kwargs[name]!r}")


def check_context_length(config, prompt_length: int, max_new_tokens: int) -> None:
    """The one rule that bounds generation: the prompt and `max_new_tokens` must fit the language model's
    `max_position_embeddings` (when its config has one); otherwise a ValueError says how many new tokens fit."""
    context = getattr(config.text_config, "max_position_embeddings", None)
    if context is not None and prompt_length + max_new_tokens > context:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} with a {prompt_length}-token prompt exceeds the language "
            f"model's context of {context} positions (max_position_embeddings); at most "
            f"{max(0, context - prompt_length)} new tokens fit"
        )


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
    use_gaze=False); `return_grounding` (default False; a model with the fixation-node head, `use_fixation_findings`):
    one entry per generated sentence with the indices into "scanpath" of the fixations that support it
    (`grounding_gaze2report.ground_report` states the rule).
    """

    _load_processor = True
    _load_image_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False

    def __init__(self, *args, language_model_dtype: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.language_model_dtype, self.language_model_dtype_reason = resolve_language_model_dtype(
            language_model_dtype, self.model.device
        )
        cast_language_model(self.model, self.language_model_dtype)

    def __call__(self, images, **kwargs):
        batch_size = kwargs.get("batch_size")
        if batch_size is not None and not is_positive_integer(batch_size):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
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
        forward_params = {"generate_kwargs": dict(generate_kwargs or {})}
        if max_new_tokens is not None:
            forward_params["generate_kwargs"]["max_new_tokens"] = max_new_tokens
        check_generate_kwargs(forward_params["generate_kwargs"])
        if return_scanpath is not None and not isinstance(return_scanpath, bool):
            raise ValueError(f"return_scanpath must be True or False, got {return_scanpath!r}")
        if return_scanpath is not None:
            if return_scanpath and not self.model.config.use_gaze:
                raise ValueError("This model was built with use_gaze=False: it predicts no scanpath.")
            forward_params["return_scanpath"] = return_scanpath
        if return_grounding is not None and not isinstance(return_grounding, bool):
            raise ValueError(f"return_grounding must be True or False, got {return_grounding!r}")
        if return_grounding:
            if not self.model.config.use_fixation_findings:
                raise ValueError(
                    "return_grounding=True needs a model with the fixation-node head (config use_fixation_findings): "
                    "this model's fixations say nothing about what is seen there."
                )
            if return_scanpath is False:
                raise ValueError("return_grounding=True indexes into the scanpath: it needs return_scanpath=True.")
            forward_params["return_grounding"] = True
        return {}, forward_params, {}

    def preprocess(self, image):
        loaded = load_image(image)
        inputs = self.processor(images=[loaded])
        inputs["original_size"] = torch.tensor([loaded.size])  # (1, 2): width, height
        return inputs

    def _forward(self, model_inputs, generate_kwargs=None, return_scanpath=None, return_grounding=False):
        original_sizes = model_inputs.pop("original_size")
        generate_kwargs = {"max_new_tokens": 128, "do_sample": False, **(generate_kwargs or {})}
        check_context_length(self.model.config, model_inputs["input_ids"].shape[1], generate_kwargs["max_new_tokens"])
        sequences = self.model.generate(**model_inputs, **generate_kwargs)
        outputs = {"sequences": sequences, "original_sizes": original_sizes}
        if return_grounding:
            outputs["fixations"], outputs["fixation_mask"], outputs["fixation_probabilities"] = (
                self.model.predict_fixation_findings(model_inputs["pixel_values"])
            )
        elif return_scanpath if return_scanpath is not None else self.model.config.use_gaze:
            outputs["fixations"], outputs["fixation_mask"] = self.model.predict_scanpath(model_inputs["pixel_values"])
        return outputs

    def postprocess(self, model_outputs):
        reports = self.processor.batch_decode(model_outputs["sequences"], skip_special_tokens=True)
        sizes = model_outputs["original_sizes"].tolist()
        results = [{"report": report} for report in reports]
        if "fixations" in model_outputs:
            scanpaths = self.processor.post_process_scanpath(
                model_outputs["fixations"], model_outputs["fixation_mask"], sizes
            )
            for result, scanpath in zip(results, scanpaths):
                result["scanpath"] = scanpath
        if "fixation_probabilities" in model_outputs:
            groundings = ground_reports(
                reports, model_outputs["fixation_probabilities"], model_outputs["fixation_mask"]
            )
            for result, grounding in zip(results, groundings):
                result["grounding"] = grounding
        return results
