"""The two-stage training recipe behind `examples/train.py` and `gaze2report demo`: its arguments, the recipe
(`run_training`, `main`), its Trainer and stage-1 objective, a callback and the model card."""

from ..data import DATA_SOURCES, load_training_data
from .arguments import DataArguments, ModelArguments, PresetArguments, RecipeArguments, TrainingPlan, plan_training
from .callbacks import ReplicaCheckCallback
from .model_card import write_model_card
from .recipe import main, run_training, scanpath_predictor_training
from .scanpath_stage import SCANPATH_WEIGHTS
from .trainer import Gaze2ReportTrainer, ScanpathPretraining, freeze_tower_parameters_without_gradient, scored_positions

__all__ = [
    "DATA_SOURCES",
    "SCANPATH_WEIGHTS",
    "DataArguments",
    "Gaze2ReportTrainer",
    "ModelArguments",
    "PresetArguments",
    "RecipeArguments",
    "ReplicaCheckCallback",
    "ScanpathPretraining",
    "TrainingPlan",
    "freeze_tower_parameters_without_gradient",
    "load_training_data",
    "main",
    "plan_training",
    "run_training",
    "scanpath_predictor_training",
    "scored_positions",
    "write_model_card",
]
