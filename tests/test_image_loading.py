"""load_image: every supported source becomes an 8-bit grayscale image of the original size."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from modeling_gaze2report.image_loading_gaze2report import load_image

from .conftest import find_rg1_uncr


def write_dicom(path: Path, pixels: np.ndarray, photometric="MONOCHROME2", bits_stored=12, **elements) -> Path:
    """A single-frame uncompressed grayscale DICOM of `pixels` (rows, columns) uint16."""
    dataset = pydicom.Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, bits_stored, bits_stored - 1
    dataset.PixelRepresentation = 0
    for name, value in elements.items():
        setattr(dataset, name, value)
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def gradient(rows=20, columns=30, high=4095) -> np.ndarray:
    return np.tile(np.linspace(0, high, columns), (rows, 1)).round()  # (rows, columns), dark left, bright right


def test_rg1_uncr_monochrome1_radiograph_loads_with_bright_bone_and_full_contrast():
    path = find_rg1_uncr()
    if path is None:
        pytest.skip("pydicom-data (data_store/data/RG1_UNCR.dcm) is not installed")
    image = load_image(path)
    assert image.mode == "L" and image.size == (1841, 1955)
    pixels = np.asarray(image, dtype=np.float64)
    height, width = pixels.shape
    spine = pixels[int(0.3 * height) : int(0.6 * height), int(0.46 * width) : int(0.54 * width)].mean()
    right_lung = pixels[int(0.3 * height) : int(0.6 * height), int(0.2 * width) : int(0.3 * width)].mean()
    left_lung = pixels[int(0.3 * height) : int(0.6 * height), int(0.7 * width) : int(0.8 * width)].mean()
    assert right_lung < spine - 20 and left_lung < spine - 20
    low, high = np.percentile(pixels, [1, 99])
    assert high - low > 150


def test_dicom_monochrome1_is_inverted_and_window_is_applied(tmp_path):
    pixels = gradient()
    mono2 = load_image(write_dicom(tmp_path / "mono2.dcm", pixels, WindowCenter=2048, WindowWidth=4096))
    mono1 = load_image(write_dicom(tmp_path / "mono1.dcm", pixels, "MONOCHROME1", WindowCenter=2048, WindowWidth=4096))
    assert mono2.size == (30, 20)
    row2, row1 = np.asarray(mono2)[0].astype(int), np.asarray(mono1)[0].astype(int)
    assert row2[0] == 0 and row2[-1] == 255 and (np.diff(row2) >= 0).all()
    np.testing.assert_array_equal(row1, 255 - row2)
    narrow = np.asarray(load_image(write_dicom(tmp_path / "w.dcm", pixels, WindowCenter=1024, WindowWidth=512)))[0]
    columns_inside = (pixels[0] > 768) & (pixels[0] < 1280)
    assert (narrow[pixels[0] <= 768] == 0).all() and (narrow[pixels[0] >= 1280] == 255).all()
    assert 0 < narrow[columns_inside].min() and narrow[columns_inside].max() < 255


def test_a_given_window_replaces_the_files_own(tmp_path):
    pixels = gradient()
    wide = write_dicom(tmp_path / "wide.dcm", pixels, WindowCenter=2048, WindowWidth=4096)
    narrow_file = write_dicom(tmp_path / "narrow.dcm", pixels, WindowCenter=1024, WindowWidth=512)
    np.testing.assert_array_equal(np.asarray(load_image(wide, window=(1024, 512))), np.asarray(load_image(narrow_file)))
    with pytest.raises(ValueError, match="window centre and width apply to DICOM files only, not to a ndarray"):
        load_image(pixels, window=(1024, 512))
    with pytest.raises(ValueError, match="window width must be at least 1, got 0"):
        load_image(wide, window=(1024, 0))


def test_dicom_without_window_16_bit_uses_rescale_and_percentile_window(tmp_path):
    pixels = gradient(high=60000)
    image = load_image(write_dicom(tmp_path / "plain", pixels, bits_stored=16, RescaleSlope=2, RescaleIntercept=-100))
    row = np.asarray(image)[0]
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row.astype(int)) >= 0).all()


def test_dicom_errors_name_the_file(tmp_path):
    frames = np.stack([gradient(), gradient()])
    path = write_dicom(tmp_path / "multi.dcm", frames, NumberOfFrames=2)
    with pytest.raises(ValueError, match=r"multi\.dcm is multi-frame \(2 frames\)"):
        load_image(path)
    (tmp_path / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x13\x37" * 10)
    with pytest.raises(ValueError, match=r"corrupt\.dcm"):
        load_image(tmp_path / "corrupt.dcm")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "I;16", "I", "F", "1"])
def test_pil_modes_become_grayscale_of_the_same_size(mode, tmp_path):
    base = Image.fromarray(gradient(high=255).astype(np.uint8))
    image = (
        base.convert("RGB").convert(mode)
        if mode not in ("I;16", "I", "F")
        else Image.fromarray(
            gradient(high=50000).astype(np.uint16 if mode == "I;16" else np.int32 if mode == "I" else np.float32)
        )
    )
    loaded = load_image(image)
    assert loaded.mode == "L" and loaded.size == (30, 20)
    row = np.asarray(loaded)[0].astype(int)
    assert row[-1] > row[0]


def test_files_16_bit_png_and_colour_jpeg(tmp_path):
    Image.fromarray(gradient(high=65535).astype(np.uint16)).save(tmp_path / "deep.png")
    row = np.asarray(load_image(tmp_path / "deep.png"))[0]
    assert row[0] == 0 and row[-1] == 255
    colour = np.zeros((10, 12, 3), dtype=np.uint8)
    colour[..., 1] = 200
    Image.fromarray(colour).save(tmp_path / "colour.jpg", quality=100)
    loaded = load_image(str(tmp_path / "colour.jpg"))
    assert loaded.size == (12, 10) and abs(int(np.asarray(loaded).mean()) - round(0.587 * 200)) <= 2


def test_arrays_of_each_dtype_and_shape():
    grey = gradient(high=255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(grey)), grey)
    np.testing.assert_array_equal(np.asarray(load_image(grey[..., None])), grey)
    rgba = np.dstack([grey, grey, grey, np.zeros_like(grey)])
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), grey)
    assert np.asarray(load_image(gradient(high=4095).astype(np.uint16)))[0, -1] == 255
    floats = np.asarray(load_image(gradient(high=1).astype(np.float32)))
    assert floats[0, 0] == 0 and floats[0, -1] == 255
    assert (np.asarray(load_image(np.full((4, 4), 0.5))) == 0).all()  # constant: documented as 0


def test_bad_sources_are_rejected_with_the_offending_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"Cannot read image file .*broken\.png"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match=r"shape \(2, 3, 5\)"):
        load_image(np.zeros((2, 3, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype bool"):
        load_image(np.zeros((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="Empty image"):
        load_image(np.zeros((0, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        load_image(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="Unsupported image mode 'LAB'"):
        load_image(Image.new("LAB", (3, 3)))
    with pytest.raises(TypeError, match="got int"):
        load_image(3)
