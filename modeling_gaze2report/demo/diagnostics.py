"""The demo's diagnostics: whether the model reads the image, and the scanpath overlays of the held-out studies."""

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.collator import Gaze2ReportCollator, load_example_image
from ..data.render import render_scanpath


@torch.no_grad()
def image_reliance(model, processor, dataset, num_studies: int = 16, batch_size: int = 8) -> dict:
    """Does the model read the image? Over the first `num_studies` studies (batches of `batch_size`, at least 2; the
    graph built on the predicted scanpath):
    the language-model loss of each study's reference report (the mean over its report tokens) given its own
    visual-gaze tokens and given those of the next study in its batch (the same encoding rolled by one, passed through
    `mm_encoder_outputs`), their means over studies and the mean increase (`image_reliance`, swapped minus own), and
    the share of attention that the report tokens give the visual-gaze tokens, averaged over layers, heads and report
    tokens, then over batches (the language model switches to eager attention for this measurement only). The
    sequence's first position is left out of that share: language models park attention there (the attention sink)
    whatever it holds, and the default prompt starts with a visual-gaze token. `per_study` holds each study's two
    losses, in dataset order. A model that ignores the image has equal losses and a share near 0."""
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
            own_losses += report_losses(outputs.logits, batch["labels"])
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
            swapped_logits = model(**text, mm_encoder_outputs={"image": swapped}).logits
            swapped_losses += report_losses(swapped_logits, batch["labels"])
    finally:
        language_model.set_attn_implementation(previous_attention)
    return {
        "num_studies": count,
        "lm_loss_own_image": sum(own_losses) / count,
        "lm_loss_swapped_image": sum(swapped_losses) / count,
        "image_reliance": sum(swapped - own for own, swapped in zip(own_losses, swapped_losses)) / count,
        "visual_attention_share": sum(shares) / len(shares),
        "per_study": {"lm_loss_own_image": own_losses, "lm_loss_swapped_image": swapped_losses},
    }


def report_losses(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Each sequence's language-model loss: the mean cross-entropy of its report tokens (position p scored against the
    label at p + 1, as the model's loss scores them). `logits` (batch, sequence, vocab), `labels` (batch, sequence)
    with -100 outside the report."""
    shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]  # (batch, sequence): the token p predicts
    token_losses = F.cross_entropy(logits.float().transpose(1, 2), shift_labels, reduction="none")  # (batch, sequence)
    num_report_tokens = (shift_labels != -100).sum(dim=1)  # (batch,)
    if (num_report_tokens == 0).any():
        raise ValueError("report_losses: a sequence has no report token (its labels are all -100)")
    return (token_losses.sum(dim=1) / num_report_tokens).tolist()


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
