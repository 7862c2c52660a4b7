"""Serve the Gaze2Report app (the same code as `gaze2report app`, modeling_gaze2report/app.py) for one model directory.

    python examples/app.py --model outputs/demo/model [--host 127.0.0.1] [--port 7860] [--share]

As a Hugging Face Space's app.py: copy this file into the model directory (docs/app.md); without --model it serves
the folder it lies in.
"""

from functools import partial
from pathlib import Path

from modeling_gaze2report.app import main
from modeling_gaze2report.cli import run_command

if __name__ == "__main__":
    run_command(partial(main, default_model=Path(__file__).resolve().parent), Path(__file__).name)
