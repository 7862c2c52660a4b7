"""The processor's 8-bit path (issue 32): an image is resized in 8 bits first (a large JPEG decoded at a reduced
scale) and only the small image becomes floats. For a JPEG decoded at a reduced scale its pixel_values equal
resizing the full-size image, as the image processor alone does, within TOLERANCE_MAX_GREY_LEVELS at any value and
TOLERANCE_MEAN_GREY_LEVELS on average, in grey levels of the 0..255 scale (in normalised values: grey levels / 255 /
image_std, e.g. a largest difference of 0.031 for std 0.5); a DICOM or PNG file, decoded at full size, gives the same
values exactly (1e-6); fixations map to the same model-frame coordinates exactly. The preprocessing cache
(`build_image_cache`) gives the same inputs as the original files, within the same tolerance, and the same fixation
tensors exactly."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BitImageProcessorPil, ViTImageProcessorPil

from modeling_gaze2report import Gaze2ReportProcessor
from modeling_gaze2report.data import GAZE2REPORT_FEATURES, Gaze2ReportCollator, build_image_cache, make_example
from modeling_gaze2report.image_loading_gaze2report import ResizedImage, load_image, load_image_reduced

TOLERANCE_MAX_GREY_LEVELS = 4.0
TOLERANCE_MEAN_GREY_LEVELS = 0.5
MIMIC_SIZE = (2544, 3056)  # (width, height) of a MIMIC-CXR-JPG image


class ViTImageProcessorWithOwnSteps(ViTImageProcessorPil):
    """An image processor with preprocessing of its own: the processor cannot resize for it and takes today's path."""

    def _preprocess(self, images, **kwargs):
        return super()._preprocess(images, **kwargs)


IMAGE_PROCESSORS = {
    "vit-224": lambda: ViTImageProcessorPil(
        size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ),
    "shortest-edge-518-crop": lambda: BitImageProcessorPil(
        size={"shortest_edge": 518}, crop_size={"height": 518, "width": 518}, do_center_crop=True
    ),
}


@pytest.fixture(scope="module")
def mimic_size_jpeg(tmp_path_factory):
    """A 2544 x 3056 grayscale JPEG (quality 95) with structure at several scales and noise."""
    rng = np.random.default_rng(0)
    width, height = MIMIC_SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = 128 + 70 * np.sin(xx / 45.0) * np.cos(yy / 61.0) + 20 * np.sin(xx / 7.0) + rng.normal(0, 12, xx.shape)
    path = tmp_path_factory.mktemp("jpeg") / "mimic_size.jpg"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=95)
    return path


def make_processor(tiny_processor, image_processor) -> Gaze2ReportProcessor:
    return Gaze2ReportProcessor(image_processor=image_processor, tokenizer=tiny_processor.tokenizer)


def full_size_pixel_values(image_processor, source) -> torch.Tensor:
    """Today's path: the image processor on the full-size image."""
    return image_processor(images=[load_image(source).convert("RGB")], return_tensors="pt")["pixel_values"]


def grey_level_differences(image_processor, pixel_values, reference) -> torch.Tensor:
    """|pixel_values - reference| in grey levels of the 0..255 scale (undoing normalisation and rescaling)."""
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    return (pixel_values - reference).abs() * std / image_processor.rescale_factor


@pytest.mark.parametrize("name", list(IMAGE_PROCESSORS))
def test_a_mimic_size_jpeg_matches_the_full_size_path_within_tolerance(tiny_processor, mimic_size_jpeg, name):
    image_processor = IMAGE_PROCESSORS[name]()
    processor = make_processor(tiny_processor, image_processor)
    pixel_values = processor(images=[mimic_size_jpeg])["pixel_values"]
    reference = full_size_pixel_values(image_processor, mimic_size_jpeg)
    assert pixel_values.shape == reference.shape
    differences = grey_level_differences(image_processor, pixel_values, reference)
    assert differences.max() <= TOLERANCE_MAX_GREY_LEVELS
    assert differences.mean() <= TOLERANCE_MEAN_GREY_LEVELS


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_keeping_twice_the_resize_size(tiny_processor, mimic_size_jpeg):
    processor = make_processor(tiny_processor, IMAGE_PROCESSORS["vit-224"]())
    image, original_size = load_image_reduced(mimic_size_jpeg, processor._draft_size)
    assert original_size == MIMIC_SIZE
    assert image.mode == "L"
    assert image.width < MIMIC_SIZE[0] and image.height < MIMIC_SIZE[1]
    assert image.width >= 2 * 224 and image.height >= 2 * 224
    resized = processor.resize_image(mimic_size_jpeg)
    assert resized.original_size == MIMIC_SIZE and resized.image.size == (224, 224)


@pytest.mark.parametrize("name", list(IMAGE_PROCESSORS))
def test_the_dicom_path_keeps_windowing_and_inversion_exactly(tiny_processor, rg1_uncr, name):
    image_processor = IMAGE_PROCESSORS[name]()
    processor = make_processor(tiny_processor, image_processor)
    pixel_values = processor(images=[rg1_uncr])["pixel_values"]
    torch.testing.assert_close(pixel_values, full_size_pixel_values(image_processor, rg1_uncr), rtol=0, atol=1e-6)


def test_an_image_decoded_at_full_size_gives_todays_values_exactly(tiny_processor, xray, tmp_path):
    path = tmp_path / "xray.png"
    Image.fromarray(xray).save(path)
    for source in (path, xray, Image.fromarray(xray)):
        pixel_values = tiny_processor(images=[source])["pixel_values"]
        reference = full_size_pixel_values(tiny_processor.image_processor, source)
        torch.testing.assert_close(pixel_values, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(IMAGE_PROCESSORS))
def test_fixations_map_to_the_same_model_frame_coordinates(tiny_processor, mimic_size_jpeg, rg1_uncr, name):
    """The 8-bit path against today's path (an image processor with steps of its own takes it): fixations given in
    the file's original pixels land on the same model-frame coordinates, bit for bit."""
    fast = make_processor(tiny_processor, IMAGE_PROCESSORS[name]())
    settings = fast.image_processor.to_dict()
    settings.pop("image_processor_type", None)
    today = make_processor(tiny_processor, ViTImageProcessorWithOwnSteps(**settings))
    assert fast.resize_size(1, 1) is not None and today.resize_size(1, 1) is None
    sizes = {mimic_size_jpeg: MIMIC_SIZE, rg1_uncr: load_image(rg1_uncr).size}
    for path, (width, height) in sizes.items():
        fixations = [[(0.0, 0.0, 0.2), (width * 0.5, height * 0.25, 0.3), (width * 0.9, height * 0.6, 0.25)]]
        fixations[0].append((float(width), float(height), 0.1))
        fast_batch = fast(images=[path], fixations=fixations)
        today_batch = today(images=[path], fixations=fixations)
        assert torch.equal(fast_batch["fixations"], today_batch["fixations"])
        assert torch.equal(fast_batch["fixation_mask"], today_batch["fixation_mask"])
        assert fast_batch["fixation_mask"].any()
        reference = full_size_pixel_values(today.image_processor, path)
        torch.testing.assert_close(today_batch["pixel_values"], reference, rtol=0, atol=0)


def test_a_resized_image_gives_the_same_inputs_as_its_file(tiny_processor, mimic_size_jpeg):
    resized = tiny_processor.resize_image(mimic_size_jpeg)
    assert isinstance(resized, ResizedImage)
    fixations = [[(1000.0, 1500.0, 0.3), (2000.0, 400.0, 0.2)]]
    from_file = tiny_processor(images=[mimic_size_jpeg], fixations=fixations)
    from_resized = tiny_processor(images=[resized], fixations=fixations)
    assert torch.equal(from_file["pixel_values"], from_resized["pixel_values"])
    assert torch.equal(from_file["fixations"], from_resized["fixations"])


def test_a_resized_image_of_another_size_or_for_another_processor_is_refused(tiny_processor, xray):
    wrong_size = ResizedImage(Image.fromarray(xray), (900, 1200))
    with pytest.raises(ValueError, match="made for another image processor"):
        tiny_processor(images=[wrong_size])
    with pytest.raises(ValueError, match="original_size"):
        tiny_processor(images=[ResizedImage(Image.new("L", (64, 64)), (0, 64))])
    settings = tiny_processor.image_processor.to_dict()
    settings.pop("image_processor_type", None)
    other = make_processor(tiny_processor, ViTImageProcessorWithOwnSteps(**settings))
    with pytest.raises(ValueError, match="does not resize in 8 bits first"):
        other(images=[ResizedImage(Image.new("L", (64, 64)), (64, 64))])


def cache_examples(paths_and_sizes) -> datasets.Dataset:
    """A GAZE2REPORT_FEATURES split with one example per (path, (width, height)), fixations spread over the image."""
    examples = []
    for index, (path, (width, height)) in enumerate(paths_and_sizes):
        fixations = [
            {"x": width * 0.3, "y": height * 0.4, "duration": 0.3, "start": float(index)},
            {"x": width * 0.7, "y": height * 0.2, "duration": 0.2, "start": index + 0.5},
            {"x": float(width), "y": float(height), "duration": 0.1, "start": index + 0.9},
        ]
        report = f"Report {index}."
        examples.append(make_example(f"study-{index}", path, report, report, fixations=fixations))
    return datasets.Dataset.from_list(examples, features=GAZE2REPORT_FEATURES)


def test_the_cache_gives_the_same_inputs_and_fixations_as_the_original_files(
    tiny_processor, mimic_size_jpeg, rg1_uncr, xray, tmp_path
):
    png = tmp_path / "xray.png"
    Image.fromarray(xray).save(png)
    dataset = cache_examples(
        [(mimic_size_jpeg, MIMIC_SIZE), (rg1_uncr, load_image(rg1_uncr).size), (png, (xray.shape[1], xray.shape[0]))]
    )
    cached, report = build_image_cache(dataset, tiny_processor, tmp_path / "cache")
    assert len(cached) == 3 and not report.skipped and report.examples_kept["cached"] == 3
    reloaded = datasets.load_from_disk(str(tmp_path / "cache"))
    assert reloaded["id"] == dataset["id"]
    assert [(row["original_width"], row["original_height"]) for row in reloaded] == [
        MIMIC_SIZE,
        load_image(rg1_uncr).size,
        (90, 120),
    ]
    collator = Gaze2ReportCollator(tiny_processor)
    from_cache = collator([reloaded[i] for i in range(3)])
    undecoded = dataset.cast_column("image", datasets.Image(decode=False))  # the collator reads each file itself
    from_files = collator([undecoded[i] for i in range(3)])
    for name in ("input_ids", "labels", "fixations", "fixation_mask"):
        assert torch.equal(from_cache[name], from_files[name]), name
    assert from_cache["fixation_mask"].sum(1).tolist() == from_files["fixation_mask"].sum(1).tolist()
    assert from_cache["fixation_mask"].any(1).all()
    differences = grey_level_differences(
        tiny_processor.image_processor, from_cache["pixel_values"], from_files["pixel_values"]
    )
    assert differences[0].max() <= TOLERANCE_MAX_GREY_LEVELS and differences[0].mean() <= TOLERANCE_MEAN_GREY_LEVELS
    assert differences[1:].max() <= 1e-4  # the DICOM and the PNG are decoded at full size either way


def test_a_cached_example_reads_no_image_file(tiny_processor, xray, tmp_path):
    png = tmp_path / "xray.png"
    Image.fromarray(xray).save(png)
    cached, _ = build_image_cache(cache_examples([(png, (90, 120))]), tiny_processor, tmp_path / "cache")
    png.unlink()
    batch = Gaze2ReportCollator(tiny_processor)([cached[0]])
    assert batch["pixel_values"].shape == (1, 3, 64, 64) and batch["fixation_mask"].sum() == 3


def test_bad_and_missing_images_are_named_and_counted_in_the_cache_build(tiny_processor, xray, tmp_path):
    good, broken, missing = tmp_path / "good.png", tmp_path / "broken.jpg", tmp_path / "missing.png"
    Image.fromarray(xray).save(good)
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    Image.fromarray(xray).save(missing)
    dataset = cache_examples([(good, (90, 120)), (broken, (90, 120)), (missing, (90, 120))])
    missing.unlink()
    with pytest.raises(ValueError, match=r"2 of 3 images cannot be cached: .*broken\.jpg.*missing\.png"):
        build_image_cache(dataset, tiny_processor, tmp_path / "strict")
    assert not (tmp_path / "strict").exists()
    cached, report = build_image_cache(dataset, tiny_processor, tmp_path / "cache", strict=False)
    assert cached["id"] == ["study-0"]
    assert [skip.file for skip in report.skipped] == [str(broken), str(missing)]
    assert [skip.location for skip in report.skipped] == ["example 1 (id 'study-1')", "example 2 (id 'study-2')"]
    assert "FileNotFoundError" in report.skipped[1].reason
    assert report.examples_kept["cached"] == 1 and "skipped 2 rows" in report.summary()


def test_records_of_a_cached_dataset_give_scanpaths_in_the_original_pixels(tiny_model, tiny_processor, xray, tmp_path):
    from modeling_gaze2report.reporting import generate_records

    png = tmp_path / "xray.png"
    Image.fromarray(xray).save(png)
    dataset = cache_examples([(png, (90, 120))])
    cached, _ = build_image_cache(dataset, tiny_processor, tmp_path / "cache")
    undecoded = dataset.cast_column("image", datasets.Image(decode=False))
    [from_cache] = generate_records(tiny_model, tiny_processor, cached, max_new_tokens=2)
    [from_file] = generate_records(tiny_model, tiny_processor, undecoded, max_new_tokens=2)
    assert from_cache["image_size"] == from_file["image_size"] == [90, 120]

    def points(record):
        return [(fixation["x"], fixation["y"], fixation["duration"]) for fixation in record["predicted_scanpath"]]

    assert np.allclose(points(from_cache), points(from_file), atol=1e-3) and len(points(from_cache)) > 0
