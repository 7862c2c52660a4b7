"""benchmarks.data_path in a tiny setting: every figure is computed and written, for each input and image size, and
the epoch is read with 0 workers and with this machine's default count."""

import json
import math

from benchmarks import data_path
from modeling_gaze2report.training.arguments import machine_dataloader_workers


def test_tiny_setting_computes_every_figure(tmp_path, capsys):
    output = tmp_path / "data_path.json"
    argv = ["--repeats", "2", "--sizes", "32", "48", "--jpeg-size", "120", "160", "--epoch-preset", "tiny"]
    returned = data_path.main([*argv, "--epoch-studies", "24", "--step-ms", "1", "--output", str(output)])
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["cpu"] and written["torch_threads"] == 1 and written["repeats"] == 2

    jpeg, dicom, cached = (written["inputs"][name] for name in ("jpeg", "dicom", "cached"))
    assert "120 x 160" in jpeg["what"] and jpeg["file_bytes"] > 0
    for figures in (jpeg, dicom) if "skipped" not in dicom else (jpeg,):
        assert figures["load_image_ms"] > 0 and set(figures["sizes"]) == {"32", "48"}
        for values in figures["sizes"].values():
            assert math.isclose(values["images_per_second_per_core"], 1000 / values["processor_ms"])
    assert set(cached["sizes"]) == {"32", "48"} and "build_image_cache" in cached["method"]
    for values in cached["sizes"].values():
        assert values["build_ms_per_image"] > 0
        assert math.isclose(values["examples_per_second_per_core"], 1000 / values["read_ms"])
        assert math.isclose(values["images_per_second_per_core"], 1000 / values["processor_ms"])

    epoch = written["epoch"]
    default_workers = machine_dataloader_workers()[0]
    assert epoch["default_workers"] == default_workers and epoch["training_studies"] == 20  # 24 less 2 x 2 held out
    assert epoch["batches"] == math.ceil(20 / epoch["batch_size"])
    assert set(epoch["by_workers"]) == {"0", str(default_workers)}
    for values in epoch["by_workers"].values():
        assert values["iteration_s"] > 0 and values["with_steps_data_wait_s"] >= 0
        assert values["with_steps_wall_s"] >= epoch["batches"] * epoch["stand_in_step_ms"] / 1000
    assert "images/s per core" in capsys.readouterr().out
