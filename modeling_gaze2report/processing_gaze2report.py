"""Processor of Gaze2Report: chest X-ray images, reports and recorded fixations -> model inputs."""

import json
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, BatchFeature, ProcessorMixin, ViTImageProcessorPil
from transformers.image_processing_backends import PilBackend
from transformers.utils import logging

from .checks_gaze2report import is_positive_integer
from .fixations_gaze2report import (
    fixation_finding_rows,
    fixations_to_array,
    merged_finding_rows,
    reduce_scanpath_with_members,
)
from .image_loading_gaze2report import ResizedImage, load_image, load_image_reduced
from .observations import FINDING_OBSERVATIONS

logger = logging.get_logger(__name__)

DEFAULT_INSTRUCTION = "Write the findings and impression of this chest X-ray."
DEFAULT_PROMPT_TEMPLATE = "{gaze}\n{instruction}\nReport:"
PROMPT_FIELDS = ("gaze", "instruction")
NO_LENGTH_LIMIT = 10**7  # tokenizers without a known context report a huge model_max_length
PIL_PREPROCESSING = PilBackend._preprocess  # resize, centre crop, rescale, normalise, in PIL and numpy
SIZE_KEYS = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width", "min_pixels", "max_pixels")
DRAFT_MARGIN = 2  # a JPEG is decoded at a reduced scale only down to this many times the resize size


class Gaze2ReportProcessor(ProcessorMixin):
    r"""
    Turns chest X-rays (PIL images, numpy arrays, or PNG/JPEG/DICOM paths), reports and recorded fixations into the
    inputs of [`Gaze2ReportForConditionalGeneration`].

    The prompt is `prompt_template` with `{gaze}` replaced by `num_gaze_tokens` copies of `gaze_token` and
    `{instruction}` by `instruction`. With reports, the report follows the prompt and `labels` are -100 everywhere
    but on the report tokens and EOS (sequences padded on the right); without reports the prompts are padded on the
    left, ready for `generate`. Fixations are given per image in ORIGINAL image pixels and seconds, as (x, y,
    duration) triples or dicts with those keys, as one dict of equal-length "x", "y" and "duration" lists (as a
    `datasets` Sequence-of-struct column comes back), or None; they are mapped into the model's [0, 1] image frame
    consistently with the image processor's resizing and cropping, and reduced to `max_fixations` by
    [`reduce_scanpath`].

    Where the image processor is a standard transformers PIL one (its steps resize, centre crop, rescale, normalise:
    e.g. `ViTImageProcessorPil`, `BitImageProcessorPil`) that resizes to a fixed height and width or its shortest edge
    to `shortest_edge`, each image is resized in 8 bits first (a large JPEG file decoded at a reduced scale, see
    `resize_image`) and only the small image is converted to floats: images decoded at full size give the values of
    the image processor alone, a JPEG decoded at a reduced scale its values within a few grey levels. Images may also
    be given as [`ResizedImage`]s (e.g. from the preprocessing cache), which are not decoded again. Any other image
    processor gets the full-size image.

    Args:
        image_processor: a transformers image processor (e.g. `ViTImageProcessorPil`).
        tokenizer: the language model's tokenizer, holding `gaze_token` as a special token.
        instruction (`str`): the instruction written into every prompt.
        prompt_template (`str`): the prompt, with `{gaze}` and `{instruction}` fields.
        gaze_token (`str`): the placeholder replaced by the visual-gaze tokens.
        num_gaze_tokens (`int`): placeholders per image; equals the model config's `num_gaze_tokens`.
        max_fixations (`int`): fixation slots per image; equals the model config's `max_fixations`.
        fixation_merge_radius (`float`): merge radius of [`reduce_scanpath`], in units of the image side.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        instruction: str = DEFAULT_INSTRUCTION,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        gaze_token: str = "<gaze>",
        num_gaze_tokens: int = 32,
        max_fixations: int = 16,
        fixation_merge_radius: float = 0.05,
        chat_template=None,
        **kwargs,
    ):
        check_prompt_template(prompt_template)
        self.instruction = instruction
        self.prompt_template = prompt_template
        self.gaze_token = gaze_token
        self.num_gaze_tokens = num_gaze_tokens
        self.max_fixations = max_fixations
        self.fixation_merge_radius = fixation_merge_radius
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        gaze_ids = tokenizer.encode(gaze_token, add_special_tokens=False)
        if len(gaze_ids) != 1:
            raise ValueError(
                f"The tokenizer splits the gaze token {gaze_token!r} into {len(gaze_ids)} pieces; add it as a special "
                "token first: tokenizer.add_special_tokens({'additional_special_tokens': [gaze_token]})"
            )
        self.gaze_token_id = gaze_ids[0]
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.prompt_ids = tokenizer.encode(
            prompt_template.format(gaze=gaze_token * num_gaze_tokens, instruction=instruction)
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`ProcessorMixin.from_pretrained`; a JSON file of a local folder that does not parse (a truncated
        `tokenizer.json`, say) is a ValueError naming the file, line and column."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except json.JSONDecodeError as error:
            folder = Path(pretrained_model_name_or_path)
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                try:
                    json.loads(path.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as broken:
                    raise ValueError(f"{path}: not valid JSON ({broken}); the processor cannot load") from error
            raise ValueError(f"{pretrained_model_name_or_path}: a processor file is not valid JSON: {error}") from error

    @classmethod
    def from_pretrained_backbones(
        cls,
        vision_model: str | None,
        language_model: str,
        image_size: int | None = None,
        **processor_kwargs,
    ) -> "Gaze2ReportProcessor":
        """A processor for a new model around pretrained backbones: the language model's tokenizer (gaining the
        `<gaze>` special token) and the vision model's image processor, or, with `vision_model=None`, a plain
        resize to `image_size` x `image_size` with mean and std 0.5. Pass `num_gaze_tokens` and `max_fixations`
        from the model config."""
        tokenizer = AutoTokenizer.from_pretrained(language_model)
        gaze_token = processor_kwargs.get("gaze_token", "<gaze>")
        tokenizer.add_special_tokens({"additional_special_tokens": [gaze_token]}, replace_extra_special_tokens=False)
        if vision_model is not None:
            image_processor = AutoImageProcessor.from_pretrained(vision_model)
        elif image_size is not None:
            image_processor = ViTImageProcessorPil(
                size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
            )
        else:
            raise ValueError("Give a vision_model to take the image processor from, or an image_size.")
        return cls(image_processor=image_processor, tokenizer=tokenizer, **processor_kwargs)

    def __call__(
        self,
        images=None,
        reports: str | Sequence[str] | None = None,
        fixations: Sequence | None = None,
        fixation_findings: Sequence | None = None,
        max_report_tokens: int | None = None,
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            images: one image or a list (PIL image, numpy array, a PNG/JPEG/DICOM path, or a `ResizedImage`).
            reports: one report or a list, one per image (training); None for generation.
            fixations: a list with, per image, a sequence of (x, y, duration) or {"x", "y", "duration"} in original
                pixels and seconds, a dict of equal-length "x", "y" and "duration" lists, or None where no gaze was
                recorded.
            fixation_findings: with `fixations`, a list with, per image, one entry per fixation: the names of the
                findings (`FINDING_OBSERVATIONS`) seen there, an empty list where none was, or None where it is not
                known; or None for the whole image. They follow the fixations' merges: a merged fixation saw what any
                of its members saw, and is unknown only when all of them are.
            max_report_tokens: report tokens kept per report (EOS excluded); longer reports are cut and a warning
                says how many.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask`, `pixel_values`, `labels` (with reports), with
            fixations `fixations` (batch, max_fixations, 3) and `fixation_mask` (batch, max_fixations), and with
            fixation_findings `fixation_finding_labels` (batch, max_fixations, 13) floats and
            `fixation_finding_mask` (batch, max_fixations), True where a real fixation's findings are known.
        """
        if images is None:
            raise ValueError("Gaze2ReportProcessor needs images: every report is generated from a chest X-ray.")
        if return_tensors != "pt":
            raise ValueError(f"Only return_tensors='pt' is supported, got {return_tensors!r}")
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("Gaze2ReportProcessor got an empty list of images")
        pixel_values, original_sizes = self._pixel_values(images)
        if isinstance(reports, str):
            reports = [reports]
        if reports is not None and not isinstance(reports, (list, tuple)):
            raise ValueError(f"reports must be a string or a list of strings, got {type(reports).__name__}")
        if max_report_tokens is not None and not is_positive_integer(max_report_tokens):
            raise ValueError(f"max_report_tokens must be None or an integer >= 1, got {max_report_tokens!r}")
        if reports is not None:
            if len(reports) != len(images):
                raise ValueError(f"Got {len(images)} images but {len(reports)} reports; give one report per image.")
            text_inputs = self._encode_with_reports(reports, max_report_tokens)
        else:
            text_inputs = self._encode_prompts(len(images))
        data = {**text_inputs, "pixel_values": pixel_values}
        for name, value in (("fixations", fixations), ("fixation_findings", fixation_findings)):
            if value is not None and (isinstance(value, (dict, str, bytes)) or not hasattr(value, "__len__")):
                raise ValueError(
                    f"{name} must be a list with one entry per image (None for an image without one), got "
                    f"{type(value).__name__}: {value!r:.80}"
                )
        if fixations is not None:
            if len(fixations) != len(images):
                raise ValueError(
                    f"Got {len(images)} images but {len(fixations)} fixation sequences; give one per image "
                    "(None for an image without recorded gaze)."
                )
            if fixation_findings is not None and len(fixation_findings) != len(images):
                raise ValueError(
                    f"Got {len(images)} images but {len(fixation_findings)} fixation_findings; give one per image "
                    "(None where the findings at its fixations are not known)."
                )
            normalised = self._normalise_fixations(fixations, original_sizes, fixation_findings)
            data["fixations"], data["fixation_mask"] = normalised[:2]
            if fixation_findings is not None:
                data["fixation_finding_labels"], data["fixation_finding_mask"] = normalised[2:]
        elif fixation_findings is not None:
            raise ValueError("fixation_findings were given without fixations: they name what each fixation saw.")
        return BatchFeature(data=data, tensor_type=None)

    def _pixel_values(self, images: Sequence) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The image processor's pixel_values (batch, 3, height, width) and each image's original (width, height)."""
        if self.resize_size(1, 1) is None:  # an image processor whose resize cannot be done first, in 8 bits
            if any(isinstance(image, ResizedImage) for image in images):
                raise ValueError(
                    f"A ResizedImage was given, but this processor's image processor "
                    f"({type(self.image_processor).__name__}, size {self.image_processor.size}) does not resize in 8 "
                    "bits first: give the original images"
                )
            loaded = [load_image(image) for image in images]
            original_sizes = [image.size for image in loaded]  # (width, height) each
            warn_about_unreadable_images(loaded, original_sizes)
            rgb = [image.convert("RGB") for image in loaded]
            return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"], original_sizes
        resized = [self.resize_image(image) for image in images]
        original_sizes = [image.original_size for image in resized]
        warn_about_unreadable_images([image.image for image in resized], original_sizes)
        rgb = [image.image.convert("RGB") for image in resized]
        return self.image_processor(images=rgb, do_resize=False, return_tensors="pt")["pixel_values"], original_sizes

    def resize_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) the image processor resizes a `width` x `height` image to (transformers' rule: a fixed
        height and width, or the shortest edge to `shortest_edge` and the other edge truncated to keep the aspect),
        or None where the processor does not resize in 8 bits first: an image processor of another backend or with
        steps of its own, no resize, a resample PIL does not name, or another kind of size."""
        image_processor = self.image_processor
        if getattr(type(image_processor), "_preprocess", None) is not PIL_PREPROCESSING:
            return None
        if not getattr(image_processor, "do_resize", False) or not isinstance(image_processor.resample, int):
            return None
        size = image_processor.size
        keys = {key for key in SIZE_KEYS if key in size}
        if keys == {"height", "width"}:
            return size["width"], size["height"]
        if keys != {"shortest_edge"}:
            return None
        shortest = size["shortest_edge"]
        if width <= height:
            return shortest, int(shortest * height / width)
        return int(shortest * width / height), shortest

    def resize_image(self, image, window: tuple[float, float] | None = None) -> ResizedImage:
        """`image` (anything `load_image` reads) as a mode "L" image resized in 8 bits, with the image processor's
        resample, to `resize_size` (the centre crop, rescale and normalisation follow in `__call__`), together with
        its original (width, height). A JPEG file is decoded at a reduced scale (PIL's draft mode) that keeps at least
        twice the resize size. `window` is `load_image`'s. A `ResizedImage` is returned as it is once its size is
        checked against this processor's."""
        if self.resize_size(1, 1) is None:
            raise ValueError(
                f"This processor's image processor ({type(self.image_processor).__name__}, size "
                f"{self.image_processor.size}) does not resize in 8 bits first: resize_image does not apply"
            )
        if isinstance(image, ResizedImage):
            original_size = image.original_size
            if not (len(original_size) == 2 and all(is_positive_integer(side) for side in original_size)):
                raise ValueError(f"A ResizedImage's original_size must be (width, height) >= 1, got {original_size!r}")
            expected = self.resize_size(*original_size)
            if image.image.size != expected or image.image.mode != "L":
                raise ValueError(
                    f"A ResizedImage of a {original_size[0]}x{original_size[1]} image is "
                    f"{image.image.size[0]}x{image.image.size[1]} in mode {image.image.mode!r}, but this processor "
                    f"resizes it to {expected} in mode 'L': it was made for another image processor (rebuild the cache)"
                )
            return image
        loaded, original_size = load_image_reduced(image, self._draft_size, window)
        target = self.resize_size(*original_size)
        resized = loaded.resize(target, resample=Image.Resampling(self.image_processor.resample))
        return ResizedImage(resized, original_size)

    def _draft_size(self, width: int, height: int) -> tuple[int, int]:
        """The least (width, height) a `width` x `height` JPEG is decoded at: `DRAFT_MARGIN` times its resize size."""
        target_width, target_height = self.resize_size(width, height)
        return DRAFT_MARGIN * target_width, DRAFT_MARGIN * target_height

    def _encode_prompts(self, batch_size: int) -> dict:
        input_ids = torch.tensor([self.prompt_ids] * batch_size)  # (batch, prompt_length)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def _encode_with_reports(self, reports: Sequence[str], max_report_tokens: int | None) -> dict:
        sequences, label_sequences, cut = [], [], 0
        for i, report in enumerate(reports):
            if not isinstance(report, str):
                raise ValueError(f"reports[{i}] must be a string, got {type(report).__name__}")
            if not report.strip():
                raise ValueError(f"reports[{i}] is empty or only whitespace: there is nothing to learn from it")
            try:
                report.encode("utf-8")
            except UnicodeEncodeError as error:
                raise ValueError(
                    f"reports[{i}] holds {report[error.start]!r} at character {error.start}, a lone surrogate that is "
                    "no Unicode text (a wrongly decoded file?)"
                ) from error
            report_ids = self.tokenizer.encode(" " + report.strip(), add_special_tokens=False)
            if max_report_tokens is not None and len(report_ids) > max_report_tokens:
                report_ids, cut = report_ids[:max_report_tokens], cut + 1
            report_ids = report_ids + [self.tokenizer.eos_token_id]
            limit = self.tokenizer.model_max_length
            if limit < NO_LENGTH_LIMIT and len(self.prompt_ids) + len(report_ids) > limit:
                raise ValueError(
                    f"reports[{i}] makes a sequence of {len(self.prompt_ids) + len(report_ids)} tokens, "
                    f"longer than the tokenizer's model_max_length ({limit}); pass max_report_tokens to "
                    "cut reports"
                )
            sequences.append(self.prompt_ids + report_ids)
            label_sequences.append([-100] * len(self.prompt_ids) + report_ids)
        if cut:
            logger.warning(f"{cut} of {len(reports)} reports were longer than {max_report_tokens} tokens and were cut.")
        length = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([s + [pad] * (length - len(s)) for s in sequences])  # (batch, length)
        attention_mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in sequences])
        labels = torch.tensor([s + [-100] * (length - len(s)) for s in label_sequences])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    @property
    def pixel_size(self) -> tuple[int, int] | None:
        """(height, width) of every image the image processor makes: its centre crop, or its fixed resize; None where
        it resizes the shortest edge without cropping (the size then follows each image)."""
        if getattr(self.image_processor, "do_center_crop", False):
            return self.image_processor.crop_size["height"], self.image_processor.crop_size["width"]
        size = self.image_processor.size
        return None if "shortest_edge" in size else (size["height"], size["width"])

    def _image_frame(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Maps original pixels into the model's [0, 1] frame: returns (scale_x, scale_y, offset_x, offset_y) so that
        x_model = x * scale_x - offset_x (likewise y), following the image processor's resize and centre crop."""
        size = self.image_processor.size
        if "shortest_edge" in size:
            factor_x = factor_y = size["shortest_edge"] / min(width, height)
        else:
            factor_x, factor_y = size["width"] / width, size["height"] / height
        resized_w, resized_h = width * factor_x, height * factor_y
        if getattr(self.image_processor, "do_center_crop", False):
            frame_w, frame_h = (
                float(self.image_processor.crop_size["width"]),
                float(self.image_processor.crop_size["height"]),
            )
        else:
            frame_w, frame_h = resized_w, resized_h
        offset_x, offset_y = (resized_w - frame_w) / 2 / frame_w, (resized_h - frame_h) / 2 / frame_h
        return factor_x / frame_w, factor_y / frame_h, offset_x, offset_y

    def _normalise_fixations(
        self, fixations: Sequence, original_sizes: list[tuple[int, int]], fixation_findings: Sequence | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = len(fixations)
        padded = torch.zeros(batch, self.max_fixations, 3)  # (batch, max_fixations, 3)
        mask = torch.zeros(batch, self.max_fixations, dtype=torch.bool)  # (batch, max_fixations)
        finding_labels = torch.zeros(batch, self.max_fixations, len(FINDING_OBSERVATIONS))  # (batch, max_fixations, 13)
        finding_mask = torch.zeros(batch, self.max_fixations, dtype=torch.bool)  # (batch, max_fixations)
        outside_view = 0
        for b, (sequence, (width, height)) in enumerate(zip(fixations, original_sizes)):
            points = fixations_to_array(sequence, f"fixations[{b}]")  # (num_fixations, 3)
            findings = (
                None if fixation_findings is None else fixation_finding_rows(fixation_findings[b], len(points), b)
            )  # (num_fixations, 13) or None
            if len(points) == 0:
                continue
            bad = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"fixations[{b}][{i}] = ({points[i, 0]:g}, {points[i, 1]:g}) lies outside its {width}x{height} "
                    f"image ({int(bad.sum())} such fixations); fixations are in original image pixels."
                )
            scale_x, scale_y, offset_x, offset_y = self._image_frame(width, height)
            points[:, 0] = points[:, 0] * scale_x - offset_x
            points[:, 1] = points[:, 1] * scale_y - offset_y
            in_view = (points[:, :2] >= 0).all(1) & (points[:, :2] <= 1).all(1)
            outside_view += int((~in_view).sum())
            points, members = reduce_scanpath_with_members(
                points[in_view], self.max_fixations, self.fixation_merge_radius
            )
            padded[b, : len(points)] = torch.from_numpy(points).float()
            mask[b, : len(points)] = True
            if findings is not None:
                labels, known = merged_finding_rows(findings[in_view], members)  # (slots, 13), (slots,)
                finding_labels[b, : len(points)] = torch.from_numpy(labels).float()
                finding_mask[b, : len(points)] = torch.from_numpy(known)
        if outside_view:
            logger.warning(f"{outside_view} fixations fell outside the centre crop the model sees and were left out.")
        return padded, mask, finding_labels, finding_mask

    def post_process_scanpath(self, fixations: torch.Tensor, fixation_mask: torch.Tensor, original_sizes) -> list:
        """Maps model-frame fixations (batch, K, 3) back to original pixels: a list, per image, of
        {"x", "y", "duration"} dicts for the valid fixations. `original_sizes` holds (width, height) per image."""
        scanpaths = []
        for points, valid, (width, height) in zip(fixations.float().cpu(), fixation_mask.cpu(), original_sizes):
            scale_x, scale_y, offset_x, offset_y = self._image_frame(width, height)
            original = [((x + offset_x) / scale_x, (y + offset_y) / scale_y, d) for x, y, d in points[valid].tolist()]
            scanpaths.append([{"x": x, "y": y, "duration": duration} for x, y, duration in original])
        return scanpaths

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Decodes generated sequences into reports: left padding and the prompt are removed first."""
        reports = []
        prompt_length, pad = len(self.prompt_ids), self.tokenizer.pad_token_id
        for sequence in sequences:
            ids = sequence.tolist() if isinstance(sequence, torch.Tensor) else list(sequence)
            start = 0
            while ids[start : start + prompt_length] != self.prompt_ids and start < len(ids) and ids[start] == pad:
                start += 1
            if ids[start : start + prompt_length] == self.prompt_ids:
                start += prompt_length
            reports.append(
                self.tokenizer.decode(ids[start:], skip_special_tokens=skip_special_tokens, **kwargs).strip()
            )
        return reports

    def decode(self, sequence, skip_special_tokens: bool = True, **kwargs) -> str:
        return self.batch_decode([sequence], skip_special_tokens=skip_special_tokens, **kwargs)[0]

    @property
    def model_input_names(self) -> list[str]:
        text_and_image = ["input_ids", "attention_mask", "pixel_values", "labels"]
        return text_and_image + ["fixations", "fixation_mask", "fixation_finding_labels", "fixation_finding_mask"]


def check_prompt_template(prompt_template: str) -> None:
    """Refuses a prompt template without the `{gaze}` field, with a field other than `{gaze}` and `{instruction}`, or
    with a stray brace, naming what is wrong."""
    if not isinstance(prompt_template, str):
        raise ValueError(f"prompt_template must be a string, got {type(prompt_template).__name__}")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(prompt_template) if field is not None]
    except ValueError as error:
        raise ValueError(
            f"prompt_template {prompt_template!r} is no format string: {error} (write {{{{ for a brace)"
        ) from error
    unknown = sorted({field for field in fields if field not in PROMPT_FIELDS})
    if unknown:
        raise ValueError(
            f"prompt_template {prompt_template!r} has the unknown field(s) {unknown}; it may use only "
            f"{{gaze}} and {{instruction}} (write {{{{ and }}}} for literal braces)"
        )
    if "gaze" not in fields:
        raise ValueError(f"prompt_template must contain '{{gaze}}', got {prompt_template!r}")


def warn_about_unreadable_images(images: list, original_sizes: list[tuple[int, int]]) -> None:
    """Warns (a report would still be written) for images with nothing to read: smaller than 8 pixels on a side in
    their original size, or of one grey level throughout."""
    for i, (image, (width, height)) in enumerate(zip(images, original_sizes)):
        low, high = image.convert("L").getextrema()
        if min(width, height) < 8 or low == high:
            logger.warning(
                f"images[{i}] ({width}x{height} pixels, grey levels {low}-{high}) has "
                "nothing to read: the report written for it is meaningless"
            )


__all__ = ["Gaze2ReportProcessor"]
