"""Loading chest radiographs as 8-bit grayscale images in their original pixel geometry.

Part of the Hub remote-code set: imports only numpy, PIL and (lazily) pydicom.

Rules, applied in this order:
- DICOM (a file with the `DICM` preamble, or a `.dcm` file that is no PNG, JPEG, TIFF, GIF or BMP; without the
  preamble it must hold standard DICOM data elements, else it is refused as no DICOM file): the Modality LUT
  or Rescale Slope/Intercept is applied, then the VOI LUT or the first Window Center/Width when the file has one,
  scaled from the VOI output range to 0..255; without a VOI transform, the robust percentile window below is used.
  A `window` given to `load_image` (centre, width) replaces the file's VOI. MONOCHROME1 is inverted so bone is
  bright. A NaN or infinite Rescale Slope/Intercept or Window Center/Width is refused, naming the field.
- 8-bit images (PIL modes "L", "1", "P", "RGB", "RGBA", "LA"... and uint8 arrays) keep their values; colour becomes
  luminance with the ITU-R 601-2 weights (0.299 R + 0.587 G + 0.114 B), alpha is ignored.
- 16-bit, 32-bit and float images (PIL modes "I;16", "I", "F", uint16 and float arrays): robust percentile
  normalisation, the 0.5th..99.5th percentile mapped linearly to 0..255 and clipped; a constant image becomes 0.

`load_image` never resizes: fixations given in original pixels stay valid. `load_image_reduced` may decode a large
JPEG at a reduced scale (PIL's draft mode) and returns the file's original size with the image; a `ResizedImage`
carries an image already at the model's input size together with that original size. URLs are not read (download
the file first).
"""

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114])
PERCENTILE_WINDOW = (0.5, 99.5)
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
RASTER_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF8", b"BM")
URL_PATTERN = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)  # http://, https://, s3://, ...
DICOM_NUMERIC_FIELDS = ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth")  # each must be finite


@dataclass(frozen=True)
class ResizedImage:
    """A mode "L" image already at the size the model's image processor resizes to, with the (width, height) of the
    original image it was made from: what the processor needs to map fixations given in original pixels."""

    image: Image.Image
    original_size: tuple[int, int]  # (width, height) of the original image


def load_image(source, window: tuple[float, float] | None = None) -> Image.Image:
    """Load `source` (a path to a PNG/JPEG/other PIL format or a DICOM file, a PIL image or a numpy array) as a
    mode "L" PIL image of the original size. `window` (centre, width; DICOM files only) replaces the file's Window
    Center/Width and VOI LUT. URLs are not read: download the file first."""
    return load_image_reduced(source, None, window)[0]


def load_image_reduced(
    source,
    minimum_size: Callable[[int, int], tuple[int, int]] | None,
    window: tuple[float, float] | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """`load_image`, except that a JPEG file is decoded at the smallest scale PIL's draft mode offers (1/2, 1/4 or
    1/8) that keeps it at least `minimum_size(width, height)` (a function of the file's width and height giving the
    least width and height to decode) on both sides; None decodes at full size. Returns the mode "L" image and the
    ORIGINAL (width, height) of the source, which fixations given in original pixels refer to."""
    if isinstance(source, str) and URL_PATTERN.match(source):
        raise ValueError(f"{source} is a URL; load_image reads local files only: download the file first")
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), window, minimum_size)
    image = _load_object(source, window)
    return image, image.size


def _load_object(source, window: tuple[float, float] | None) -> Image.Image:
    if window is not None:
        raise ValueError(f"A window centre and width apply to DICOM files only, not to a {type(source).__name__}")
    if isinstance(source, Image.Image):
        return _pil_to_grayscale(source, description="PIL image")
    if isinstance(source, np.ndarray):
        return Image.fromarray(_array_to_grayscale(source, description="array"))
    raise TypeError(
        f"load_image expects a path, a PIL image or a numpy array, got {type(source).__name__}: {source!r:.80}"
    )


def _load_path(
    path: Path, window: tuple[float, float] | None, minimum_size: Callable[[int, int], tuple[int, int]] | None
) -> tuple[Image.Image, tuple[int, int]]:
    """The image and the file's (width, height). Every failure to read or convert the file is a ValueError that
    names it (a missing pydicom stays an ImportError)."""
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: {path}")
    if window is not None and not is_dicom(path):
        raise ValueError(f"A window centre and width apply to DICOM files only; {path} is no DICOM file")
    if window is not None and not all(isinstance(value, (int, float)) and math.isfinite(value) for value in window):
        raise ValueError(f"The window centre and width must be finite numbers, got {tuple(window)!r}")
    if window is not None and not window[1] >= 1:
        raise ValueError(f"The window width must be at least 1, got {window[1]!r}")
    try:
        if is_dicom(path):
            image = _load_dicom(path, window)
            return image, image.size
        with Image.open(path) as image:
            original_size = image.size
            if minimum_size is not None:
                image.draft("L", minimum_size(*original_size))  # JPEG only: a reduced scale; other formats ignore it
            image.load()
            return _pil_to_grayscale(image, description=str(path)), original_size
    except ImportError:
        raise
    except Exception as error:  # PIL's and pydicom's own errors (a decompression bomb, a bad VR, ...) included
        if isinstance(error, ValueError) and str(path) in str(error):
            raise
        raise ValueError(f"Cannot read image file {path}: {type(error).__name__}: {error}") from error


def is_dicom(path: Path) -> bool:
    """By content first: the DICOM preamble means DICOM, a raster image's signature means not; otherwise (a DICOM
    file without the preamble, as older files are) the `.dcm` suffix decides."""
    if has_dicom_preamble(path):
        return True
    with open(path, "rb") as file:
        if file.read(16).startswith(RASTER_SIGNATURES):
            return False
    return path.suffix.lower() == ".dcm"


def has_dicom_preamble(path: Path) -> bool:
    """Whether the file holds the `DICM` prefix after its 128-byte preamble."""
    with open(path, "rb") as file:
        return file.read(132)[128:132] == b"DICM"


def check_finite_dicom_fields(dataset, path: Path) -> None:
    """Refuses a Rescale Slope/Intercept or Window Center/Width that is NaN or infinite (it would turn the image
    black or white without a word), naming the field."""
    for name in DICOM_NUMERIC_FIELDS:
        if name not in dataset:
            continue
        value = dataset[name].value
        values = value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]
        try:
            finite = all(math.isfinite(float(entry)) for entry in values)
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ValueError(f"DICOM file {path}: {name} is {value!r}, not a finite number")


def _pil_to_grayscale(image: Image.Image, description: str) -> Image.Image:
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Empty image ({image.width}x{image.height}): {description}")
    if image.mode == "L":
        return image.copy()
    if image.mode in HIGH_BIT_DEPTH_MODES:
        return Image.fromarray(_array_to_grayscale(np.asarray(image), description=description))
    try:
        return image.convert("L")
    except ValueError as error:
        raise ValueError(f"Unsupported image mode {image.mode!r}: {description}") from error


def _array_to_grayscale(pixels: np.ndarray, description: str) -> np.ndarray:
    """(height, width[, channels]) integer or float pixels -> (height, width) uint8."""
    if pixels.dtype.kind not in "uif":
        raise ValueError(
            f"Unsupported image dtype {pixels.dtype} for {description}: expected uint8, uint16 or float pixels"
        )
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        grayscale = pixels[..., :3] @ LUMINANCE_WEIGHTS  # (height, width)
    elif pixels.ndim == 2:
        grayscale = pixels
    else:
        raise ValueError(
            f"Unsupported image shape {pixels.shape} for {description}: "
            "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if grayscale.size == 0:
        raise ValueError(f"Empty image of shape {pixels.shape}: {description}")
    if pixels.dtype == np.uint8:
        return np.rint(grayscale).astype(np.uint8)
    return _percentile_window(grayscale.astype(np.float64), description)


def _percentile_window(pixels: np.ndarray, description: str) -> np.ndarray:
    """Map the 0.5th..99.5th percentile of `pixels` linearly to 0..255 (clipped); a constant image becomes 0."""
    if not np.isfinite(pixels).all():
        raise ValueError(f"Image has NaN or infinite pixel values: {description}")
    low, high = np.percentile(pixels, PERCENTILE_WINDOW)
    if high <= low:
        low, high = pixels.min(), pixels.max()
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return _scale_to_uint8(pixels, low, high)


def _scale_to_uint8(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (pixels - low) * (255.0 / (high - low))
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def _load_dicom(path: Path, window: tuple[float, float] | None = None) -> Image.Image:
    try:
        import pydicom
        from pydicom.datadict import dictionary_has_tag
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError as error:
        raise ImportError(f"Reading the DICOM file {path} needs pydicom: pip install pydicom") from error

    try:
        dataset = pydicom.dcmread(path, force=True)
    except Exception as error:
        if not has_dicom_preamble(path):
            raise ValueError(f"{path} is not a DICOM file: it has no DICM preamble and does not parse as one ({error})")
        raise ValueError(f"Cannot read DICOM file {path}: {error}") from error
    if not has_dicom_preamble(path) and not any(dictionary_has_tag(tag) for tag in dataset.keys()):
        raise ValueError(
            f"{path} is not a DICOM file: it has no DICM preamble and holds no DICOM data element (a text or other "
            "file named .dcm?)"
        )
    if "PixelData" not in dataset:
        raise ValueError(f"DICOM file {path} has no pixel data")
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = float(window[0]), float(window[1])
        if "VOILUTSequence" in dataset:
            del dataset.VOILUTSequence
    check_finite_dicom_fields(dataset, path)
    number_of_frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if number_of_frames > 1:
        raise ValueError(
            f"DICOM file {path} is multi-frame ({number_of_frames} frames); only single images are supported"
        )
    try:
        stored = dataset.pixel_array
    except Exception as error:
        transfer_syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ValueError(
            f"Cannot decode the pixel data of DICOM file {path} (transfer syntax {transfer_syntax}): {error}"
        ) from error

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return Image.fromarray(_array_to_grayscale(stored, description=str(path)))
    if stored.size == 0:
        raise ValueError(f"Empty image of shape {stored.shape}: {path}")

    modality = apply_modality_lut(stored, dataset).astype(np.float64)  # (height, width)
    if "VOILUTSequence" in dataset or "WindowCenter" in dataset:
        windowed = apply_voi_lut(modality, dataset).astype(np.float64)
        low, high = _voi_output_range(dataset, apply_voi_lut)
        grayscale = _scale_to_uint8(windowed, low, high)
    else:
        grayscale = _percentile_window(modality, str(path))
    if photometric == "MONOCHROME1":
        grayscale = 255 - grayscale
    return Image.fromarray(grayscale)


def _voi_output_range(dataset, apply_voi_lut) -> tuple[float, float]:
    """The (lowest, highest) value the dataset's VOI transform can output: its first and last LUT entries, or the
    values a window gives inputs far below and far above it."""
    if "VOILUTSequence" in dataset:
        entries, first_mapped, _ = dataset.VOILUTSequence[0].LUTDescriptor
        probe = np.array([first_mapped, first_mapped + (entries or 2**16) - 1], dtype=np.int64)
    else:
        probe = np.array([-1e15, 1e15])
    low, high = apply_voi_lut(probe, dataset).astype(np.float64)
    return float(min(low, high)), float(max(low, high))
