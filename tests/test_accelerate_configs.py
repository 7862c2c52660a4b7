import os
import pathlib
import re
import subprocess
import sys
from unittest import mock

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configuration" / "accelerate"

EXPECTED_DISTRIBUTED_TYPES = {
    "single_gpu.yaml": DistributedType.NO,
    "multi_gpu.yaml": DistributedType.MULTI_GPU,
    "fsdp.yaml": DistributedType.FSDP,
    "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
    "deepspeed_zero3.yaml": DistributedType.DEEPSPEED,
    "cpu_ddp_2proc.yaml": DistributedType.MULTI_GPU,
}


def launch_arguments(config_name):
    """The arguments `accelerate launch --config_file <config>` settles on, as the launcher itself computes them."""
    parser_arguments = launch_command_parser().parse_args(["--config_file", str(CONFIG_DIR / config_name), "train.py"])
    arguments, config, _ = _validate_launch_command(parser_arguments)
    return arguments, config


def test_every_config_file_is_covered():
    assert sorted(path.name for path in CONFIG_DIR.glob("*.yaml")) == sorted(EXPECTED_DISTRIBUTED_TYPES)


@pytest.mark.parametrize("config_name", sorted(EXPECTED_DISTRIBUTED_TYPES))
def test_config_loads_with_accelerate_and_has_its_distributed_type(config_name):
    config = load_config_from_file(str(CONFIG_DIR / config_name))
    assert config.distributed_type == EXPECTED_DISTRIBUTED_TYPES[config_name]
    assert config.num_machines == 1
    launch_arguments(config_name)


def test_fsdp_config_builds_a_full_shard_fsdp2_plugin():
    arguments, _ = launch_arguments("fsdp.yaml")
    with mock.patch.dict(os.environ, prepare_multi_gpu_env(arguments), clear=True):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    assert plugin.transformer_cls_names_to_wrap == ["Dinov2Layer", "LlamaDecoderLayer"]


@pytest.mark.parametrize("config_name, zero_stage", [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_config_builds_a_plugin_with_its_zero_stage(config_name, zero_stage):
    arguments, config = launch_arguments(config_name)
    arguments.deepspeed_fields_from_accelerate_config = ",".join([*config.deepspeed_config, "mixed_precision"])
    _, environment = prepare_deepspeed_cmd_env(arguments)
    assert environment["ACCELERATE_MIXED_PRECISION"] == "bf16"
    with mock.patch.dict(os.environ, environment, clear=True):
        plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == zero_stage
    assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (
        zero_stage == 3
    )


@pytest.mark.slow
def test_cpu_ddp_config_runs_two_gloo_processes(tmp_path):
    script = tmp_path / "report_rank.py"
    script.write_text(
        "import os\n"
        "from accelerate import Accelerator\n"
        "accelerator = Accelerator()\n"
        "line = (f'rank={accelerator.process_index} world_size={accelerator.num_processes} '\n"
        "        f'type={accelerator.distributed_type.value} backend={accelerator.state.backend}\\n')\n"
        "os.write(1, line.encode())  # one write: a pipe keeps it whole, print's separate newline could interleave\n"
    )
    environment = {**os.environ, "ACCELERATE_USE_CPU": "1", "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(CONFIG_DIR / "cpu_ddp_2proc.yaml"),
            "--main_process_port",
            "0",
            str(script),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    # The two workers share one stdout pipe; each writes its report in one write, so reports stay whole.
    reports = sorted(re.findall(r"rank=(\d+) world_size=(\d+) type=(\w+) backend=(\w+)", completed.stdout))
    assert reports == [("0", "2", "MULTI_CPU", "gloo"), ("1", "2", "MULTI_CPU", "gloo")], completed.stdout
