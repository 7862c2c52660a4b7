"""Trainer callbacks of the recipe."""

import json
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..files import write_text_atomically


class ReplicaCheckCallback(TrainerCallback):
    """Under several processes, checks at the end of training that every replica holds the same trainable weights
    and writes the per-rank checksums to `replica_check.json`; diverged replicas are a RuntimeError."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return
        trainable = [parameter.detach().double().sum() for parameter in model.parameters() if parameter.requires_grad]
        checksum = torch.stack(trainable).sum().reshape(1)  # (1,)
        gathered = [torch.zeros_like(checksum) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, checksum)
        checksums = [float(value) for value in gathered]
        if state.is_world_process_zero:
            write_text_atomically(
                Path(args.output_dir) / "replica_check.json",
                json.dumps({"checksums": checksums, "identical": len(set(checksums)) == 1}, indent=2),
            )
        if len(set(checksums)) != 1:
            raise RuntimeError(f"Replicas diverged: trainable-weight checksums per rank {checksums}")
