"""The wheel is the product: built from the repository, installed (not editable) into a fresh virtual environment,
it runs the tiny demo from a folder outside the checkout, and the pipeline loads the model it wrote."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from .conftest import REPOSITORY_ROOT, find_rg1_uncr

# What setup.py, setup.cfg and MANIFEST.in build from; nothing else of the checkout is copied.
SOURCE_PARTS = (
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "MANIFEST.in",
    "README.md",
    "LICENSE",
    "CITATION.cff",
    "constraints.txt",
    "modeling_gaze2report",
    "configuration",
    "processors",
)


def run(command, cwd, env=None):
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    shown = " ".join(map(str, command))
    assert result.returncode == 0, f"{shown} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_installed_wheel_runs_the_tiny_demo_outside_the_checkout(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for part in SOURCE_PARTS:
        if (REPOSITORY_ROOT / part).is_dir():
            shutil.copytree(REPOSITORY_ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPOSITORY_ROOT / part, source / part)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            tmp_path / "dist",
            source,
        ],
        cwd=tmp_path,
    )
    [wheel] = (tmp_path / "dist").glob("gaze2report-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "modeling_gaze2report/package_data/configuration/tiny.json" in names
    assert "modeling_gaze2report/package_data/processors/tiny/tokenizer.json" in names

    # the dependencies come from this interpreter's site-packages; gaze2report itself only from the wheel
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    location = run([python, "-c", "import modeling_gaze2report; print(modeling_gaze2report.__file__)"], elsewhere, env)
    assert location.strip().startswith(str(venv)), f"imported {location.strip()}, not the wheel in {venv}"

    run([venv / "bin" / "gaze2report", "demo", "--preset", "tiny", "--output", "out"], elsewhere, env)
    metrics = json.loads((elsewhere / "out" / "metrics.json").read_text())
    assert metrics["preset"] == "tiny" and metrics["headline"]
    image = find_rg1_uncr() or next((elsewhere / "out" / "overlays").glob("*.png"))
    result = run(
        [
            python,
            "-c",
            "import json, sys, modeling_gaze2report; from transformers import pipeline; "
            "pipe = pipeline('gaze2report', model='out/model'); "
            "print(json.dumps(pipe(sys.argv[1], max_new_tokens=8)))",
            image,
        ],
        elsewhere,
        env,
    )
    [output] = json.loads(result.strip().splitlines()[-1])
    assert isinstance(output["report"], str) and output["scanpath"]
