"""Gaze2Report: gaze-guided radiology report generation around any Hugging Face causal LM.

Importing the package registers the model type "gaze2report" with AutoConfig, AutoModel,
AutoModelForImageTextToText and AutoProcessor, and the pipeline task "gaze2report". `gaze2report_pipeline(model)` builds
that pipeline after checking that `model` is a Gaze2Report checkpoint (transformers' `pipeline` reads the config before
any class registered here is consulted).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_gaze2report import Gaze2ReportConfig
from .fixations_gaze2report import reduce_scanpath
from .image_loading_gaze2report import load_image
from .modeling_gaze2report import Gaze2ReportForConditionalGeneration, Gaze2ReportModel, Gaze2ReportPreTrainedModel
from .pipeline_gaze2report import Gaze2ReportPipeline, gaze2report_pipeline
from .processing_gaze2report import Gaze2ReportProcessor
from .scanpath_gaze2report import GazeGraphEncoder, ScanpathPredictor, build_gaze_graph

AutoConfig.register("gaze2report", Gaze2ReportConfig, exist_ok=True)
AutoModel.register(Gaze2ReportConfig, Gaze2ReportModel, exist_ok=True)
AutoModelForImageTextToText.register(Gaze2ReportConfig, Gaze2ReportForConditionalGeneration, exist_ok=True)
AutoProcessor.register(Gaze2ReportConfig, Gaze2ReportProcessor, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    "gaze2report", pipeline_class=Gaze2ReportPipeline, pt_model=AutoModelForImageTextToText, type="multimodal"
)

# save_pretrained writes `auto_map` entries and copies these files, so `trust_remote_code=True` loads a saved
# directory where this package is not installed.
Gaze2ReportConfig.register_for_auto_class()
Gaze2ReportModel.register_for_auto_class("AutoModel")
Gaze2ReportForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
Gaze2ReportProcessor.register_for_auto_class("AutoProcessor")

__version__ = "0.1.0"

__all__ = [
    "Gaze2ReportConfig",
    "Gaze2ReportModel",
    "Gaze2ReportPreTrainedModel",
    "Gaze2ReportForConditionalGeneration",
    "Gaze2ReportProcessor",
    "Gaze2ReportPipeline",
    "gaze2report_pipeline",
    "ScanpathPredictor",
    "GazeGraphEncoder",
    "build_gaze_graph",
    "reduce_scanpath",
    "load_image",
]
