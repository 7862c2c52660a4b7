"""Gaze2Report data: one dataset schema, readers of the real datasets, the synthetic world, the choice among them
(`load_training_data`) and the collator."""

from ..image_loading_gaze2report import load_image
from .alignment import (
    DEFAULT_EYE_VOICE_LAG,
    align_fixations_to_transcript,
    fixation_finding_names,
    fixation_finding_targets,
    fixation_in_region,
)
from .cache import build_image_cache
from .collator import Gaze2ReportCollator
from .readers_common import ReadReport, Skip
from .readers_gaze import load_egd_cxr, load_reflacx
from .readers_mimic import load_iu_xray, load_mimic_cxr
from .schema import GAZE2REPORT_FEATURES, make_example, normalize_split, report_fields, split_report
from .sources import DATA_SOURCES, DataSourceArguments, load_training_data
from .synthetic import make_synthetic_dataset

__all__ = [
    "DATA_SOURCES",
    "DEFAULT_EYE_VOICE_LAG",
    "GAZE2REPORT_FEATURES",
    "DataSourceArguments",
    "Gaze2ReportCollator",
    "ReadReport",
    "Skip",
    "align_fixations_to_transcript",
    "build_image_cache",
    "fixation_finding_names",
    "fixation_finding_targets",
    "fixation_in_region",
    "load_egd_cxr",
    "load_image",
    "load_iu_xray",
    "load_mimic_cxr",
    "load_reflacx",
    "load_training_data",
    "make_example",
    "make_synthetic_dataset",
    "normalize_split",
    "report_fields",
    "split_report",
]
