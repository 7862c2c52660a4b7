import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from benchmarks.data_path import find_rg1_uncr  # noqa: E402  (one copy: the benchmark needs it outside the suite)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str):
    """Imports a script of the repository (examples/, benchmarks/) as a module, to call its functions in-process."""
    import importlib.util

    path = REPOSITORY_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def rg1_uncr():
    path = find_rg1_uncr()
    if path is None:
        pytest.skip("pydicom-data (data_store/data/RG1_UNCR.dcm) is not installed")
    return path


@pytest.fixture(scope="session")
def tiny_processor():
    from modeling_gaze2report import Gaze2ReportProcessor

    return Gaze2ReportProcessor.from_pretrained(REPOSITORY_ROOT / "processors" / "tiny")


@pytest.fixture
def tiny_model():
    from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration

    torch.manual_seed(0)
    return Gaze2ReportForConditionalGeneration(Gaze2ReportConfig()).eval()


@pytest.fixture
def tiny_model_dir(tiny_model, tiny_processor, tmp_path):
    """The tiny model and processor saved as a model directory."""
    directory = tmp_path / "model"
    tiny_model.save_pretrained(directory)
    tiny_processor.save_pretrained(directory)
    return directory


@pytest.fixture
def xray():
    """A 120 x 90 (height x width) uint8 test image with structure, so that patches differ."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:90]
    image = 128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 10, (120, 90))
    return np.clip(image, 0, 255).astype(np.uint8)
