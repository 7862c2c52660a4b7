"""The demo's diagnostics: whether the model reads the image, and the scanpath overlays of the held-out studies."""

from pathlib import Path

import torch

from ..data.collator import Gaze2ReportCollator, load_example_image
from ..data.render import render_scanpath


@torch.no_grad()
def image_reliance(model, processor, dataset, num_studies: int = 16, batch_size: int = 8) -> dict:
    """Does the model read the image? Over the first `num_studies` studies (batches of `batch_size`, at least 2;
    averages are over batches, the graph built on the predicted scanpath):
    the language-model loss of the reference reports given each study's own visual-gaze tokens and given those of the
    next study in its batch (the same encoding rolled by one, passed through `mm_encoder_outputs`), and the share of
    attention that the report tokens give the visual-gaze tokens, averaged over layers, heads and report tokens (the
    language model switches to eager attention for this measurement only). The sequence's first position is left out
    of that share: language models park attention there (the attention sink) whatever it holds, and the default
    prompt starts with a visual-gaze token. A model that ignores the image has equal losses and a share near 0."""
    if batch_size < 2:
        raise ValueError(f"image_reliance swaps images within a batch: batch_size must be >= 2, got {batch_size}")
    count = min(num_studies, len(dataset))
    if count < 2:
        raise ValueError(f"image_reliance needs at least 2 studies, got {count}")
    model.eval()
    collator = Gaze2ReportCollator(processor, gaze_source="predicted")
    language_model = model.get_decoder()
    previous_attention = language_model.config._attn_implementation
    language_model.set_attn_implementation("eager")
    starts = list(range(0, count, batch_size))
    if count - starts[-1] == 1 and len(starts) > 1:
        starts.pop()  # a lone last study joins the batch before it: it has no study to swap images with
    own_losses, swapped_losses, shares = [], [], []
    try:
        for start, stop in zip(starts, starts[1:] + [count]):
            batch = collator([dataset[i] for i in range(start, stop)]).to(model.device)
            outputs = model(**batch, output_attentions=True)
            own_losses.append(float(outputs.lm_loss))
            attention = torch.stack(outputs.attentions).float().mean(dim=2)  # (layers, batch, queries, keys)
            report_queries = batch["labels"] != -100  # (batch, sequence)
            visual_keys = batch["input_ids"] == model.config.gaze_token_id  # (batch, sequence)
            visual_keys[:, 0] = False  # the first position is the attention sink, whatever token sits there
            visual_keys = visual_keys.to(attention.dtype)
            on_visual = (attention * visual_keys[None, :, None, :]).sum(-1)  # (layers, batch, queries)
            shares.append(float(on_visual[:, report_queries].mean()))
            next_study_tokens = outputs.image_outputs.pooler_output.roll(-1, dims=0)  # row i holds study i + 1's
            swapped = type(outputs.image_outputs)(pooler_output=next_study_tokens)
            text = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}
            swapped_losses.append(float(model(**text, mm_encoder_outputs={"image": swapped}).lm_loss))
    finally:
        language_model.set_attn_implementation(previous_attention)
    return {
        "num_studies": count,
        "lm_loss_own_image": sum(own_losses) / len(own_losses),
        "lm_loss_swapped_image": sum(swapped_losses) / len(swapped_losses),
        "visual_attention_share": sum(shares) / len(shares),
    }


def write_overlays(records: list[dict], dataset, directory: Path, limit: int | None = None) -> list[Path]:
    """PNG overlays of the recorded (orange) and predicted (cyan) scanpaths, one per study; where a record has the
    grounding of its sentences, each sentence's fixations in its colour, with a legend."""
    by_id = {example_id: i for i, example_id in enumerate(dataset["id"])}
    paths = []
    for record in records[:limit]:
        image = load_example_image(dataset[by_id[record["id"]]]["image"])
        path = Path(directory) / f"{record['id']}.png"
        render_scanpath(
            image,
            record["recorded_fixations"],
            predicted=record["predicted_scanpath"] or None,
            path=path,
            grounding=record.get("grounding") if record["predicted_scanpath"] else None,
        )
        paths.append(path)
    return paths
