"""transformers' own common model and config tests (`ModelTesterMixin`, `ConfigTester`) run against tiny Gaze2Report
models: two variants (defaults; recorded gaze in the inputs, with the fixation-node head and its targets).

The mixins come from the sdist of the installed transformers version, which pip downloads at test time into
~/.cache/gaze2report/transformers-tests/<version>/ (or $GAZE2REPORT_TRANSFORMERS_TESTS); this repository holds none of
transformers' test files. The sdist lacks `tests/generation/`, `tests/exporters/` and `tests/utils/`: the three names
the mixins import from there are given as empty stand-ins (what GenerationTesterMixin would check of the paths our
model touches is tested in tests/test_generation.py;
torch.export is not a supported deployment). Every skip below says why in one line."""

import importlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

import pytest
import torch
import transformers
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration, Gaze2ReportModel

PACKAGE = "transformers_common_tests"
STAND_INS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/test_configuration_utils.py": "config_common_kwargs = {}\n",
}


def transformers_common_tests() -> Path:
    """The folder holding the `transformers_common_tests` package for the installed transformers version, downloaded
    and unpacked on first use (atomically: a folder is complete or absent)."""
    root = Path(
        os.environ.get("GAZE2REPORT_TRANSFORMERS_TESTS", Path.home() / ".cache" / "gaze2report" / "transformers-tests")
    )
    target = root / transformers.__version__
    if (target / PACKAGE / "test_modeling_common.py").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        download = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"transformers=={transformers.__version__}",
                "--dest",
                scratch,
            ],
            capture_output=True,
            text=True,
        )
        if download.returncode != 0:
            pytest.skip(
                f"pip could not download the transformers {transformers.__version__} sdist: {download.stderr[-500:]}",
                allow_module_level=True,
            )
        package = Path(scratch) / "unpacked" / PACKAGE
        package.mkdir(parents=True)
        with tarfile.open(next(Path(scratch).glob("transformers-*.tar.gz"))) as archive:
            for member in archive.getmembers():
                name = Path(member.name)
                if name.parent.name == "tests" and name.name in (
                    "test_modeling_common.py",
                    "test_configuration_common.py",
                ):
                    (package / name.name).write_bytes(archive.extractfile(member).read())
        (package / "__init__.py").write_text("")
        for relative, text in STAND_INS.items():
            (package / relative).parent.mkdir(exist_ok=True)
            (package / relative).parent.joinpath("__init__.py").write_text("")
            (package / relative).write_text(text)
        try:
            (Path(scratch) / "unpacked").rename(target)
        except OSError:  # another process unpacked it first
            pass
    return target


sys.path.insert(0, str(transformers_common_tests()))
pytest.importorskip("parameterized", reason="transformers' common tests need `parameterized` (the test extra)")
ModelTesterMixin = importlib.import_module(f"{PACKAGE}.test_modeling_common").ModelTesterMixin
GenerationTesterMixin = importlib.import_module(f"{PACKAGE}.generation.test_utils").GenerationTesterMixin
ConfigTester = importlib.import_module(f"{PACKAGE}.test_configuration_common").ConfigTester


class Gaze2ReportModelTester:
    """Tiny configs and random inputs: `num_gaze_tokens` placeholders, then text."""

    def __init__(self, parent, with_recorded_gaze: bool = False):
        self.parent = parent
        self.with_recorded_gaze = with_recorded_gaze
        self.batch_size = 7  # the eager-vs-SDPA test's batch: it pads smaller batches with rows lacking placeholders
        self.text_length = 7
        self.is_training = True
        config = self.get_config()
        self.vision_config = config.vision_config
        self.text_config = config.text_config
        self.num_hidden_layers = config.text_config.num_hidden_layers
        self.hidden_size = config.text_config.hidden_size
        self.vocab_size = config.text_config.vocab_size
        self.num_attention_heads = config.text_config.num_attention_heads
        self.image_size = config.image_size
        self.patch_size = config.vision_config.patch_size
        self.num_channels = config.vision_config.num_channels
        self.seq_length = config.num_gaze_tokens + self.text_length

    def get_config(self) -> Gaze2ReportConfig:
        config = Gaze2ReportConfig(use_fixation_findings=self.with_recorded_gaze)
        config.text_config.pad_token_id = 0
        return config

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        text_ids = torch.randint(4, config.text_config.vocab_size, (self.batch_size, self.text_length))
        gaze_ids = torch.full((self.batch_size, config.num_gaze_tokens), config.gaze_token_id)
        input_ids = torch.cat([gaze_ids, text_ids], dim=1)  # (batch, seq_length)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, -2:] = 0  # one row right-padded
        pixel_values = torch.rand(self.batch_size, self.num_channels, self.image_size, self.image_size)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}
        if self.with_recorded_gaze:
            fixations = torch.rand(self.batch_size, config.max_fixations, 3)  # (batch, max_fixations, 3)
            fixation_mask = torch.zeros(self.batch_size, config.max_fixations, dtype=torch.bool)
            fixation_mask[:, :5] = True
            findings = (torch.rand(self.batch_size, config.max_fixations, 13) < 0.2).float()  # (batch, K, 13)
            known = fixation_mask & (torch.rand(self.batch_size, config.max_fixations) < 0.7)  # (batch, K)
            inputs.update(
                fixations=fixations,
                fixation_mask=fixation_mask,
                fixation_finding_labels=findings,
                fixation_finding_mask=known,
            )
        return config, inputs


SKIPS = {
    "test_resize_embeddings_untied": "the tiny Llama ties its embeddings; the untied case needs another text config",
    "test_model_weights_reload_no_missing_tied_weights": "our from_pretrained refuses a checkpoint with missing "
    "weights unless allow_missing_weights=True, by design (tests/test_bad_input.py)",
    "test_model_rope_scaling_from_config": "it feeds random ids alone; ids holding the <gaze> id without pixel_values "
    "are refused by design (tests/test_transformers_behaviour.py)",
    "test_model_outputs_equivalence": "the mixin formats its message with `tuple - dict`, which torch refuses for our "
    "bool fixation masks; tuple outputs are tested in tests/test_transformers_behaviour.py",
}


@pytest.fixture(autouse=True)
def gaze2report_is_a_base_model(monkeypatch):
    """The mixins tell headless models (which return no loss) from models with a head by transformers' registry of
    in-library base models; Gaze2ReportModel is out of library."""
    monkeypatch.setitem(MODEL_MAPPING_NAMES, Gaze2ReportConfig.model_type, Gaze2ReportModel.__name__)


class Gaze2ReportConformance(ModelTesterMixin, GenerationTesterMixin):
    all_model_classes = (Gaze2ReportModel, Gaze2ReportForConditionalGeneration)
    _is_composite = True
    additional_model_inputs = [
        "pixel_values",
        "fixations",
        "fixation_mask",
        "fixation_finding_labels",
        "fixation_finding_mask",
    ]
    tester_options: dict = {}

    def setUp(self):
        self.model_tester = Gaze2ReportModelTester(self, **self.tester_options)
        self.config_tester = ConfigTester(self, config_class=Gaze2ReportConfig, has_text_modality=False)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and model_class is Gaze2ReportForConditionalGeneration:
            labels = inputs["input_ids"].clone()  # (batch, seq_length)
            labels[labels == self.model_tester.get_config().gaze_token_id] = -100
            inputs["labels"] = labels
        return inputs

    def test_config(self):
        self.config_tester.run_common_tests()


class TestDefaults(Gaze2ReportConformance, unittest.TestCase):
    tester_options = {}
    # without recorded fixations nothing supervises the scanpath predictor (the graph reads its predictions detached);
    # stage 2 freezes it then (training.scanpath_predictor_training)
    test_all_params_have_gradient = False


class TestRecordedGaze(Gaze2ReportConformance, unittest.TestCase):
    tester_options = {"with_recorded_gaze": True}


for test_class in (TestDefaults, TestRecordedGaze):
    for attribute in dir(test_class):
        for name, reason in SKIPS.items():  # a parameterized test's cases are named `<name>_<index>_<case>`
            if re.fullmatch(rf"{name}(_\d+.*)?", attribute):
                setattr(test_class, attribute, unittest.skip(reason)(getattr(test_class, attribute)))
