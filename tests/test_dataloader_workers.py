"""Training decodes its images in DataLoader workers: the default count from the CPUs and the training processes of
the machine, an explicit count kept, a collator that works in a worker, and the same stage-2 losses with workers as
without."""

import logging
import os
import pickle

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from modeling_gaze2report.data import Gaze2ReportCollator, make_synthetic_dataset
from modeling_gaze2report.training import ModelArguments, RecipeArguments, recipe, run_training
from modeling_gaze2report.training.arguments import DataArguments, default_dataloader_workers


@pytest.mark.parametrize(
    ("cpus", "processes", "workers"),
    [(1, 1, 0), (2, 1, 1), (3, 1, 2), (8, 1, 4), (64, 1, 4), (8, 2, 3), (16, 4, 3), (4, 4, 0), (3, 2, 0), (2, 4, 0)],
)
def test_the_default_keeps_a_cpu_per_process_for_training_and_at_most_four_workers(cpus, processes, workers):
    assert default_dataloader_workers(cpus, processes) == workers


@pytest.mark.parametrize(("cpus", "processes"), [(0, 1), (2, 0), (2.0, 1), (True, 1), (2, None)])
def test_the_default_refuses_counts_that_are_no_positive_integer(cpus, processes):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        default_dataloader_workers(cpus, processes)


@pytest.fixture
def launched(monkeypatch):
    """Runs the training command line on a machine of 6 CPUs without training: returns its TrainingArguments."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    seen = {}

    def run_training_stub(preset, model_args, data_args, recipe_args, training_args, config_overrides):
        seen["training_args"] = training_args

    monkeypatch.setattr(recipe, "run_training", run_training_stub)

    def launch(*argv, local_world_size=None):
        if local_world_size is None:
            monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world_size)
        recipe.main(["--output_dir", "unused", "--use_cpu", *argv])
        return seen["training_args"]

    return launch


def test_the_command_line_without_the_option_takes_the_default_and_says_why(launched, caplog):
    with caplog.at_level(logging.INFO, logger="modeling_gaze2report.training.arguments"):
        assert launched().dataloader_num_workers == 4  # min(4, 6 - 1)
    assert "--dataloader_num_workers not given: 6 CPUs for 1 training process(es)" in caplog.text
    assert launched(local_world_size="2").dataloader_num_workers == 2  # two processes of 3 CPUs, one for training


@pytest.mark.parametrize("given", ["0", "3"])
def test_the_command_line_keeps_a_given_count_zero_included(launched, given):
    assert launched("--dataloader_num_workers", given).dataloader_num_workers == int(given)
    assert launched(f"--dataloader_num_workers={given}").dataloader_num_workers == int(given)


def test_a_bad_local_world_size_is_named(launched):
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE must be an integer >= 1, got 'two'"):
        launched(local_world_size="two")


@pytest.fixture(scope="module")
def small_dataset():
    return make_synthetic_dataset(num_studies=20, seed=0, image_size=64)


def test_the_collator_pickled_for_a_spawned_worker_makes_the_same_batch(small_dataset, tiny_processor):
    collator = Gaze2ReportCollator(tiny_processor, gaze_source="mix", recorded_gaze_probability=0.5, seed=3)
    examples = list(small_dataset["train"].select(range(4)))
    expected, copied = collator(examples), pickle.loads(pickle.dumps(collator))(examples)
    assert expected.keys() == copied.keys()
    for name in expected:
        assert torch.equal(copied[name], expected[name]), name


class RecordLosses(TrainerCallback):
    def __init__(self):
        self.losses, self.workers = [], None

    def on_train_begin(self, args, state, control, **kwargs):
        self.workers = args.dataloader_num_workers

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def stage_two_losses(dataset, output_dir, workers: int) -> list[float]:
    """The logged losses of a tiny two-stage run whose stages load their batches in `workers` DataLoader workers;
    stage 2 builds each graph from recorded or predicted gaze as its study's seeded draw says."""
    model_args = ModelArguments(lora_r=4, lora_alpha=8, train_language_model=False, language_model_dtype="float32")
    data_args = DataArguments(gaze_source="mix", recorded_gaze_probability=0.5, max_report_tokens=48)
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        dataloader_num_workers=workers,
    )
    callback = RecordLosses()
    recipe_args = RecipeArguments(scanpath_max_steps=2, save_merged=False)
    run_training("tiny", model_args, data_args, recipe_args, training_args, dataset=dataset, callbacks=[callback])
    assert callback.workers == workers  # stage 2's DataLoader had them
    return callback.losses


def test_training_with_two_workers_gives_the_losses_of_training_without(small_dataset, tmp_path):
    in_process = stage_two_losses(small_dataset, tmp_path / "in_process", workers=0)
    in_workers = stage_two_losses(small_dataset, tmp_path / "workers", workers=2)
    assert len(in_process) == 4 and all(loss > 0 for loss in in_process)
    assert in_workers == pytest.approx(in_process, rel=1e-6)
