"""A one-time preprocessing cache: every example's image at the model's input size, so that later epochs, the
evaluation and generation decode no image file.

The cache is the dataset itself (every column kept, fixations and regions still in original pixels) with `image`
replaced by the mode "L" image the processor resizes to (`Gaze2ReportProcessor.resize_image`, before its centre
crop) and two columns added, `original_width` and `original_height`: the size of the original image, which maps
fixations and scanpaths between original pixels and the model's frame exactly as from the original file. The
collator passes such examples to the processor as `ResizedImage`s. A cache is bound to the image processor's resize
size: a processor of another size refuses it.

`build_image_cache` is this `datasets.map` recipe, with the bad images named and counted:

    dataset = dataset.cast_column("image", datasets.Image(decode=False))  # decode each file once, in the map
    cached = dataset.map(
        resize_example_images, batched=True, fn_kwargs={"processor": processor}, features=cache_features(dataset)
    )
    # rows whose `cache_error` is set hold a bad or missing image; keep the others:
    cached.filter(lambda error: error is None, input_columns="cache_error").remove_columns("cache_error")
    cached.save_to_disk(folder)  # later: datasets.load_from_disk(folder), then the usual collator
"""

import io

import datasets
from PIL import Image

from ..files import write_output_folder
from .readers_common import ReadReport, Skip

CACHE_ERROR = "cache_error"  # the column naming why an example's image could not be cached (None when it was)


def cache_features(dataset: datasets.Dataset) -> datasets.Features:
    """The features of `dataset` mapped by `resize_example_images`: `image` a decoded `datasets.Image`, and the
    original size and the error column added."""
    features = dataset.features.copy()
    features["image"] = datasets.Image()
    features["original_width"] = datasets.Value("int32")
    features["original_height"] = datasets.Value("int32")
    features[CACHE_ERROR] = datasets.Value("string")
    return features


def resize_example_images(batch: dict, processor) -> dict:
    """For `datasets.map(batched=True)` over examples whose `image` is undecoded (`datasets.Image(decode=False)`):
    each image resized by `processor.resize_image` (a large JPEG file decoded at a reduced scale), with its original
    `original_width` and `original_height`; an image that cannot be read becomes None, with `cache_error` naming the
    file and the problem."""
    images, widths, heights, errors = [], [], [], []
    for image in batch["image"]:
        try:
            resized = processor.resize_image(_undecoded_image_source(image))
        except (ValueError, OSError, TypeError) as error:  # a missing, unreadable or undecodable image
            images.append(None)
            widths.append(None)
            heights.append(None)
            errors.append(f"{type(error).__name__}: {error}")
            continue
        images.append(resized.image)
        widths.append(resized.original_size[0])
        heights.append(resized.original_size[1])
        errors.append(None)
    return {"image": images, "original_width": widths, "original_height": heights, CACHE_ERROR: errors}


def build_image_cache(
    dataset: datasets.Dataset,
    processor,
    folder,
    strict: bool = True,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, ReadReport]:
    """Caches `dataset` (a `GAZE2REPORT_FEATURES` split, or any dataset with an `image` column) for `processor`
    and saves it to `folder` (`datasets.save_to_disk`; a new or empty folder, or an earlier cache, which is replaced
    whole). Returns the cached dataset and a `ReadReport` of what was kept and what was left out. A bad or missing
    image raises a ValueError naming every such file when `strict`; otherwise its example is left out of the cache
    and named and counted in the report. `num_proc` is `datasets.map`'s."""
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(f"build_image_cache caches one datasets.Dataset (a split), got {type(dataset).__name__}")
    if "image" not in dataset.column_names:
        raise ValueError(f"The dataset has no 'image' column to cache (columns: {dataset.column_names})")
    if processor.resize_size(1, 1) is None:
        raise ValueError(
            f"The processor's image processor ({type(processor.image_processor).__name__}, size "
            f"{processor.image_processor.size}) does not resize in 8 bits first: its inputs cannot be cached"
        )
    undecoded = dataset.cast_column("image", datasets.Image(decode=False))
    mapped = undecoded.map(
        resize_example_images,
        batched=True,
        fn_kwargs={"processor": processor},
        features=cache_features(dataset),
        num_proc=num_proc,
        desc="Caching images",
    )
    report = ReadReport(source=f"image cache for {type(processor.image_processor).__name__}", strict=strict)
    report.rows_read["dataset"] = len(dataset)
    for index, error in enumerate(mapped[CACHE_ERROR]):
        if error is not None:
            example = undecoded[index]
            location = f"example {index} (id {example.get('id')!r})"
            path = (example["image"] or {}).get("path") or "<image bytes>"
            report.skipped.append(Skip(path, location, error))
    if report.skipped and strict:
        named = "; ".join(f"{skip.file} ({skip.location}): {skip.reason}" for skip in report.skipped)
        raise ValueError(
            f"{len(report.skipped)} of {len(dataset)} images cannot be cached: {named} (pass strict=False to leave "
            "them out and count them)"
        )
    cached = mapped.filter(lambda error: error is None, input_columns=CACHE_ERROR).remove_columns(CACHE_ERROR)
    report.examples_kept["cached"] = len(cached)
    write_output_folder(folder, "folder", "build_image_cache", lambda staging: cached.save_to_disk(staging))
    return datasets.load_from_disk(str(folder)), report


def _undecoded_image_source(image):
    """What `resize_image` reads an undecoded `datasets.Image` value from: its bytes as an image, else its file."""
    if isinstance(image, dict) and image.get("bytes") is not None:
        return Image.open(io.BytesIO(image["bytes"]))
    if isinstance(image, dict):
        return image.get("path")
    return image
