"""The wheel is the product: built from the repository, installed (not editable) into a fresh virtual environment,
it runs the tiny demo from a folder outside the checkout, and the pipeline loads the model it wrote."""

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

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


def parent_site_packages() -> list[str]:
    """The folders this interpreter imports installed packages from: its site-packages and, where enabled, the
    user's."""
    folders = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [folder for folder in folders if Path(folder).is_dir()]


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

    # gaze2report only from the wheel; the dependencies from the site-packages of the interpreter running this test,
    # listed in a .pth file after the new environment's own. `--system-site-packages` would not do: from inside a
    # virtual environment it exposes the base interpreter's packages, not this one's. Path lines of a .pth file are
    # added without reading the .pth files in those folders, so this interpreter's editable install is not seen.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    venv_site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path)
    (Path(venv_site_packages.strip()) / "parent_site_packages.pth").write_text("\n".join(parent_site_packages()) + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    # the fewest studies and steps the demo takes: what is tested here is the package, not the training
    demo = ["demo", "--preset", "tiny", "--output", "out", "--num-studies", "10", "--steps", "1"]
    run([venv / "bin" / "gaze2report", *demo], elsewhere, env)
    metrics = json.loads((elsewhere / "out" / "metrics.json").read_text())
    assert metrics["preset"] == "tiny" and metrics["headline"]
    image = find_rg1_uncr() or next((elsewhere / "out" / "overlays").glob("*.png"))
    result = run(
        [
            python,
            "-c",
            "import json, sys, modeling_gaze2report; from transformers import pipeline; "
            "pipe = pipeline('gaze2report', model='out/model'); outputs = pipe(sys.argv[1], max_new_tokens=8); "
            "print(json.dumps({'module': modeling_gaze2report.__file__, 'outputs': outputs}))",
            image,
        ],
        elsewhere,
        env,
    )
    result = json.loads(result.strip().splitlines()[-1])
    assert result["module"].startswith(str(venv)), f"imported {result['module']}, not the wheel in {venv}"
    [output] = result["outputs"]
    assert isinstance(output["report"], str) and output["scanpath"]
