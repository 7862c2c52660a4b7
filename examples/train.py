"""Fine-tune Gaze2Report with the two-stage recipe (scanpath pretraining, then LoRA report generation).

Single process:
    python examples/train.py --preset tiny --output_dir runs/tiny --max_steps 50
The preset's config changed, e.g. the no-gaze ablation:
    python examples/train.py --preset tiny --config_overrides '{"use_gaze": false}' --output_dir runs/no-gaze
Several processes (the same script, unchanged):
    accelerate launch --config_file configuration/accelerate/multi_gpu.yaml examples/train.py --preset ...
    torchrun --nproc_per_node 2 examples/train.py --preset ...
Real data (MIMIC-CXR-JPG images with EGD-CXR gaze):
    python examples/train.py --preset rad-dino-llama3.2-1b --data_source egd-cxr --data_path egd-cxr/1.0.0 \
        --image_root mimic-cxr-jpg/2.0.0 --output_dir runs/egd --num_train_epochs 3 --bf16 true

Every option: python examples/train.py --help
"""

from pathlib import Path

from modeling_gaze2report.cli import run_command
from modeling_gaze2report.training import main

if __name__ == "__main__":
    run_command(main, Path(__file__).name)
