"""Inference that encodes each image once, for the pipeline (and through it `gaze2report generate` and the app) and
`reporting.generate_records`.

[`generate_with_one_encoding`] runs `get_image_features` once per batch of images, generates the reports from those
visual-gaze tokens and reads the predicted scanpath and the findings seen at its fixations from the same encoding;
[`read_generations`] turns that into reports, scanpaths in original pixels and the grounding of each sentence.
"""

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import ModelOutput

from .checks_gaze2report import check_context_length, check_generate_kwargs
from .grounding_gaze2report import ground_report

DEFAULT_MAX_NEW_TOKENS = 128


@dataclass
class Gaze2ReportGenerationOutput(ModelOutput):
    """
    Args:
        sequences (`torch.LongTensor` of shape `(batch, num_return_sequences, sequence)`): each image's prompt and
            generated tokens, its returned sequences side by side (the best beam first).
        fixations (`torch.FloatTensor` of shape `(batch, max_fixations, 3)`): the predicted scanpath, x and y in
            [0, 1] of the model's image and duration in seconds (None unless asked for).
        fixation_mask (`torch.BoolTensor` of shape `(batch, max_fixations)`): its valid fixations, a non-empty prefix.
        fixation_probabilities (`torch.FloatTensor` of shape `(batch, max_fixations, 13)`): the fixation-node head's
            probability of each finding (`FINDING_OBSERVATIONS`) seen at each fixation (None unless asked for).
    """

    sequences: torch.LongTensor | None = None
    fixations: torch.FloatTensor | None = None
    fixation_mask: torch.BoolTensor | None = None
    fixation_probabilities: torch.FloatTensor | None = None


def check_requested_outputs(config, return_scanpath: bool, return_grounding: bool) -> None:
    """Refuses a scanpath from a model built with use_gaze=False, and a grounding from a model without the
    fixation-node head on a scanpath (config `grounds_findings`) or without the scanpath whose fixations it names."""
    if return_scanpath and not config.use_gaze:
        raise ValueError("This model was built with use_gaze=False: it predicts no scanpath.")
    if return_grounding and not config.grounds_findings:
        raise ValueError(
            "return_grounding=True needs a model with gaze and the fixation-node head (config use_gaze and "
            "use_fixation_findings): this model's fixations say nothing about what is seen there."
        )
    if return_grounding and not return_scanpath:
        raise ValueError("return_grounding=True indexes into the scanpath: it needs return_scanpath=True.")


@torch.no_grad()
def generate_with_one_encoding(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor,
    pixel_values: torch.FloatTensor,
    generate_kwargs: dict | None = None,
    return_scanpath: bool = False,
    return_grounding: bool = False,
) -> Gaze2ReportGenerationOutput:
    """Reports for a batch of prompts of one image each, from one encoding of the images.

    `model.get_image_features(pixel_values)` runs once (the graph on the predicted scanpath); `generate` writes the
    reports from its visual-gaze tokens: greedy and at most `DEFAULT_MAX_NEW_TOKENS` new tokens unless
    `generate_kwargs` says otherwise (beams, sampling and `num_return_sequences` included). With `return_scanpath`,
    the predicted scanpath the graph was built on; with `return_grounding`, the sigmoid of the fixation-node head's
    logits at its fixations. Bad settings and a prompt plus `max_new_tokens` beyond the language model's context are
    refused before anything runs.
    """
    generate_kwargs = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "do_sample": False, **(generate_kwargs or {})}
    check_generate_kwargs(generate_kwargs)
    check_context_length(model.config, input_ids.shape[1], generate_kwargs["max_new_tokens"])
    check_requested_outputs(model.config, return_scanpath, return_grounding)
    image_outputs = model.get_image_features(pixel_values)
    # generate expands the visual-gaze tokens of what it is given in place (beams, num_return_sequences), so it gets
    # an output of its own and `image_outputs` keeps one row per image
    visual_gaze_tokens = type(image_outputs)(pooler_output=image_outputs.pooler_output)
    sequences = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        mm_encoder_outputs={"image": visual_gaze_tokens},
        **generate_kwargs,
    )  # (batch * num_return_sequences, sequence), each image's sequences side by side
    fixation_probabilities = None
    if return_grounding:
        fixation_probabilities = torch.sigmoid(image_outputs.fixation_finding_logits.float())  # (batch, K, 13)
    return Gaze2ReportGenerationOutput(
        sequences=sequences.view(input_ids.shape[0], -1, sequences.shape[-1]),
        fixations=image_outputs.graph_fixations if return_scanpath else None,
        fixation_mask=image_outputs.graph_fixation_mask if return_scanpath else None,
        fixation_probabilities=fixation_probabilities,
    )


def read_generations(
    processor,
    sequences: torch.LongTensor,
    original_sizes: list,
    fixations: torch.FloatTensor | None = None,
    fixation_mask: torch.BoolTensor | None = None,
    fixation_probabilities: torch.FloatTensor | None = None,
) -> list[list[dict]]:
    """Per image, one result per returned sequence ([`Gaze2ReportGenerationOutput`]'s fields; `original_sizes` holds
    each image's (width, height)): `{"report": str}`, with the image's predicted scanpath in original pixels and
    seconds (`"scanpath"`, `post_process_scanpath`) when `fixations` are given, and the grounding of the report's
    sentences on it (`"grounding"`, `ground_report`) when `fixation_probabilities` are given."""
    batch_size, num_sequences = sequences.shape[:2]
    reports = processor.batch_decode(sequences.flatten(0, 1), skip_special_tokens=True)
    scanpaths = None
    if fixations is not None:
        scanpaths = processor.post_process_scanpath(fixations, fixation_mask, original_sizes)
    results = []
    for image in range(batch_size):
        image_results = []
        for report in reports[image * num_sequences : (image + 1) * num_sequences]:
            result = {"report": report}
            if scanpaths is not None:
                result["scanpath"] = [dict(point) for point in scanpaths[image]]
            if fixation_probabilities is not None:
                valid = fixation_mask[image].cpu()  # (max_fixations,)
                result["grounding"] = ground_report(report, fixation_probabilities[image].cpu()[valid])
            image_results.append(result)
        results.append(image_results)
    return results


__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "Gaze2ReportGenerationOutput",
    "check_requested_outputs",
    "generate_with_one_encoding",
    "read_generations",
]
