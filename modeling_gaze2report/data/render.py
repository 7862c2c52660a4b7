"""Draw scanpaths on a chest X-ray: numbered circles sized by fixation duration, joined in viewing order."""

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..files import write_atomically

RECORDED_COLOUR = (255, 170, 0)  # orange
PREDICTED_COLOUR = (0, 200, 255)  # cyan
# one per grounded sentence, in order (cycled), none of them the scanpaths' own colours
SENTENCE_COLOURS = ((255, 60, 200), (120, 230, 0), (255, 235, 0), (255, 70, 70), (170, 120, 255), (0, 210, 140))
# the size cap of every rendering, whatever the input's size or shape: neither side longer, no more pixels in all
MAX_RENDERED_SIDE = 4096
MAX_RENDERED_PIXELS = 12_000_000
MAX_LEGEND_LINES = 24  # sentences beyond these are counted in one last line


def _as_fixation_array(fixations, name):
    """{x, y, duration} dicts or an (n, 3) array -> float (n, 3) array, rejecting anything else."""
    if isinstance(fixations, np.ndarray) or (hasattr(fixations, "numpy") and not isinstance(fixations, (list, tuple))):
        array = np.asarray(fixations, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 3:
            raise ValueError(f"render_scanpath: {name} must have shape (num_fixations, 3), got {array.shape}")
    else:
        rows = []
        for index, fixation in enumerate(fixations):
            if not isinstance(fixation, dict) or not {"x", "y", "duration"} <= set(fixation):
                raise ValueError(
                    f"render_scanpath: {name}[{index}] must be a dict with x, y, duration, got {fixation!r}"
                )
            rows.append([fixation["x"], fixation["y"], fixation["duration"]])
        array = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(array).all() or (array[:, 2] < 0).any():
        raise ValueError(f"render_scanpath: {name} holds non-finite values or negative durations")
    return array


def _draw_scanpath(draw, fixations, scale, colours, font, radius_per_second):
    """`colours`: the path's colour, then one per fixation."""
    centres = fixations[:, :2] * scale
    if len(centres) > 1:
        draw.line([tuple(point) for point in centres], fill=colours[0] + (200,), width=max(1, round(scale * 1.5)))
    for number, ((x, y), duration, colour) in enumerate(zip(centres, fixations[:, 2], colours[1:]), start=1):
        radius = max(3.0, radius_per_second * math.sqrt(duration) * scale)
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=colour + (90,), outline=colour + (255,), width=2
        )
        draw.text(
            (x, y),
            str(number),
            fill=(255, 255, 255, 255),
            font=font,
            anchor="mm",
            stroke_width=2,
            stroke_fill=(0, 0, 0, 255),
        )


def _grounding_colours(grounding, num_fixations: int) -> tuple[list, list]:
    """Per predicted fixation, the colour of the first grounded sentence that it supports (cyan for none), and the
    legend's (colour, "n. sentence") lines, one per sentence with fixations."""
    colours, legend = [PREDICTED_COLOUR] * num_fixations, []
    for entry in grounding:
        if not isinstance(entry, dict) or not {"sentence", "fixations"} <= set(entry):
            raise ValueError(
                f"render_scanpath: a grounding entry must be a dict with sentence and fixations: {entry!r}"
            )
        bad = [index for index in entry["fixations"] if not 0 <= index < num_fixations]
        if bad:
            raise ValueError(
                f"render_scanpath: grounding of {entry['sentence']!r} names fixations {bad}; the predicted scanpath "
                f"has {num_fixations}"
            )
        if not entry["fixations"]:
            continue
        colour = SENTENCE_COLOURS[len(legend) % len(SENTENCE_COLOURS)]
        numbers = ", ".join(str(index + 1) for index in entry["fixations"])
        legend.append((colour, f"{entry['sentence']} [{numbers}]"))
        for index in entry["fixations"]:
            if colours[index] == PREDICTED_COLOUR:
                colours[index] = colour
    return colours, legend


def _draw_legend(canvas, legend, font):
    """`canvas` with a black band below it listing the legend's lines in their colours (cut to the width; past
    MAX_LEGEND_LINES, one line counts the sentences left out)."""
    if len(legend) > MAX_LEGEND_LINES:
        left_out = len(legend) - (MAX_LEGEND_LINES - 1)
        legend = legend[: MAX_LEGEND_LINES - 1] + [((255, 255, 255), f"... and {left_out} more sentences")]
    line_height = round(font.size * 1.4)
    band = Image.new("RGB", (canvas.width, line_height * len(legend) + line_height // 2), (0, 0, 0))
    draw = ImageDraw.Draw(band)
    for row, (colour, text) in enumerate(legend):
        y = line_height // 4 + row * line_height
        draw.rectangle((8, y + 2, 8 + font.size, y + 2 + font.size), fill=colour)
        while len(text) > 1 and draw.textlength(text, font=font) > canvas.width - font.size - 24:
            text = text[:-2] + "…"
        draw.text((font.size + 16, y), text, fill=colour, font=font)
    combined = Image.new("RGB", (canvas.width, canvas.height + band.height))
    combined.paste(canvas, (0, 0))
    combined.paste(band, (0, canvas.height))
    return combined


def render_scanpath(image, fixations, predicted=None, path=None, min_size=512, radius_per_second=None, grounding=None):
    """Draw the recorded scanpath (orange) and optionally a predicted one (cyan) on an X-ray.

    image: a PIL image or a (height, width) / (height, width, 3) uint8 array. fixations / predicted: sequences of
    {x, y, duration} dicts or (n, 3) arrays, x and y in the image's pixels, duration in seconds. The picture is
    upscaled so its shorter side is at least `min_size` (fixations are scaled with it). A circle's radius grows with
    the square root of its duration (`radius_per_second` pixels of the input image at 1 s; default 4% of the
    shorter side). `grounding` (with `predicted`): the pipeline's per-sentence grounding; each sentence's supporting
    fixations take that sentence's colour, and a legend below the picture lists the sentences with their fixation
    numbers. Whatever the input's size and shape, the picture is scaled (`rendered_scale`) so that it stays within
    MAX_RENDERED_SIDE on each side and MAX_RENDERED_PIXELS in all, legend included. Returns a PIL RGB image; with
    `path`, also writes it as a PNG (atomically).
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"render_scanpath: image array must be uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}"
            )
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"render_scanpath: image must be a PIL image or a numpy array, got {type(image).__name__}")
    recorded = _as_fixation_array(fixations, "fixations")
    scanpaths = [(recorded, [RECORDED_COLOUR] * (len(recorded) + 1))]
    legend = []
    if grounding is not None and predicted is None:
        raise ValueError("render_scanpath: grounding names predicted fixations; pass predicted too")
    if predicted is not None:
        predicted = _as_fixation_array(predicted, "predicted")
        colours = [PREDICTED_COLOUR] * len(predicted)
        if grounding is not None:
            colours, legend = _grounding_colours(grounding, len(predicted))
        scanpaths.append((predicted, [PREDICTED_COLOUR, *colours]))
    if radius_per_second is not None and not (math.isfinite(radius_per_second) and radius_per_second >= 0):
        raise ValueError(f"render_scanpath: radius_per_second must be a finite number >= 0, got {radius_per_second!r}")
    width, height = image.size
    scale = rendered_scale(width, height, min_size)
    radius_per_second = 0.04 * min(width, height) if radius_per_second is None else radius_per_second
    canvas = image.convert("RGB").resize(_scaled_size(width, height, scale), Image.Resampling.BICUBIC)
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default(size=max(10, round(0.025 * min(canvas.size))))
    for scanpath, colours in scanpaths:
        _draw_scanpath(draw, scanpath, scale, colours, font, radius_per_second)
    rendered = Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
    if legend:
        rendered = _draw_legend(rendered, legend, font)
        legend_scale = rendered_scale(rendered.width, rendered.height, min_size=1)
        if legend_scale < 1.0:
            rendered = rendered.resize(_scaled_size(*rendered.size, legend_scale), Image.Resampling.LANCZOS)
    if path is not None:
        save_png(rendered, path)
    return rendered


def rendered_scale(width: int, height: int, min_size: int = 512) -> float:
    """Rendered pixels per input pixel for a `width` x `height` picture: enough for its shorter side to reach
    `min_size` (never below 1 for that), then lowered until neither side exceeds MAX_RENDERED_SIDE and the picture
    holds at most MAX_RENDERED_PIXELS."""
    if not (isinstance(min_size, int) and not isinstance(min_size, bool) and 1 <= min_size <= MAX_RENDERED_SIDE):
        raise ValueError(f"render_scanpath: min_size must be an integer in 1..{MAX_RENDERED_SIDE}, got {min_size!r}")
    if width < 1 or height < 1:
        raise ValueError(f"render_scanpath: the image is empty ({width}x{height})")
    scale = max(1.0, min_size / min(width, height))
    return min(scale, MAX_RENDERED_SIDE / max(width, height), math.sqrt(MAX_RENDERED_PIXELS / (width * height)))


def _scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The picture's size at `scale` (from `rendered_scale`), each side at least one pixel: rounded, or rounded down
    where rounding would pass a cap."""
    size = max(1, round(width * scale)), max(1, round(height * scale))
    if max(size) > MAX_RENDERED_SIDE or size[0] * size[1] > MAX_RENDERED_PIXELS:
        size = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    return size


def overlay_file_names(images: list) -> list[str]:
    """One PNG file name per image path, distinct for distinct list entries (compared as the case-insensitive file
    systems do): the image's stem (`x.png`), or for a name already chosen, the stem with the first free number
    (`x-2.png`, `x-3.png`, ...), where "chosen" counts every earlier name, suffixed ones included."""
    chosen, names = set(), []
    for image in images:
        stem = Path(image).stem
        name, number = f"{stem}.png", 1
        while name.casefold() in chosen:
            number += 1
            name = f"{stem}-{number}.png"
        chosen.add(name.casefold())
        names.append(name)
    return names


def save_png(image, path):
    """Writes a PIL image as PNG atomically (a temporary file in the same folder, renamed into place)."""
    write_atomically(path, lambda stream: image.save(stream, format="PNG"), binary=True)
