"""The dtype a language model runs in: bfloat16 where the device multiplies bfloat16 matrices fast, else float32.

The rule, in one sentence: on CUDA, bfloat16 where the GPU supports it; on a CPU, bfloat16 only where the CPU has
bfloat16 matrix units (AVX512-BF16 or AMX) and a short timed probe confirms that a bfloat16 matrix product beats a
float32 one there (a library restricted to older instructions, e.g. `ONEDNN_MAX_CPU_ISA=AVX2`, fails the probe);
float32 everywhere else, where bfloat16 matrix products have no native kernel and float32 is the fast dtype.
"""

import functools
import time

import torch

LANGUAGE_MODEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_bfloat16_matrix_units() -> bool:
    """Whether the CPU reports AVX512-BF16 or AMX tiles (torch's cpuinfo flags)."""
    flags = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(flag is not None and flag() for flag in flags)


@functools.cache
def cpu_bfloat16_matmul_speedup(size: int = 384, repeats: int = 5) -> float:
    """float32 time / bfloat16 time of a `size`-square linear layer on this CPU (the best of `repeats`), measured once
    per process."""

    def best_time(dtype: torch.dtype) -> float:
        inputs, weight = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        torch.nn.functional.linear(inputs, weight)  # warm-up: the first call picks and builds the kernel
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            torch.nn.functional.linear(inputs, weight)
            times.append(time.perf_counter() - started)
        return min(times)

    return best_time(torch.float32) / best_time(torch.bfloat16)


def preferred_language_model_dtype(device: str | torch.device = "cpu") -> tuple[torch.dtype, str]:
    """The dtype the rule above picks for `device`, and the reason in words."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, f"the GPU ({name}) supports bfloat16"
        return torch.float32, f"the GPU ({name}) does not support bfloat16"
    if device.type != "cpu":
        return torch.float32, f"no faster dtype is known for device type {device.type!r}"
    capability = torch.backends.cpu.get_cpu_capability()
    if not cpu_has_bfloat16_matrix_units():
        return torch.float32, f"the CPU ({capability}) has no bfloat16 matrix units (AVX512-BF16 or AMX)"
    speedup = cpu_bfloat16_matmul_speedup()
    if speedup <= 1.0:
        return torch.float32, (
            f"the CPU ({capability}) reports bfloat16 matrix units, but a bfloat16 matrix product "
            f"ran {1 / speedup:.1f}x slower than float32 in this process"
        )
    return torch.bfloat16, (
        f"the CPU ({capability}) has bfloat16 matrix units and a bfloat16 matrix product ran "
        f"{speedup:.1f}x faster than float32"
    )


def resolve_language_model_dtype(name: str, device: str | torch.device = "cpu") -> tuple[torch.dtype, str]:
    """`"auto"`: the preferred dtype for `device`; a dtype name (float32, bfloat16, float16): that dtype, as asked."""
    if name == "auto":
        return preferred_language_model_dtype(device)
    if name not in LANGUAGE_MODEL_DTYPES:
        raise ValueError(
            f"language_model_dtype must be 'auto' or one of {', '.join(LANGUAGE_MODEL_DTYPES)}, got {name!r}"
        )
    return LANGUAGE_MODEL_DTYPES[name], "asked for explicitly"


def training_language_model_dtype(
    name: str, device: str | torch.device, train_in_full: bool
) -> tuple[torch.dtype, str]:
    """The dtype a language model trains in and the reason: with LoRA, `resolve_language_model_dtype(name)`; trained
    in full, float32 (mixed precision is TrainingArguments' `bf16`), and any other named dtype is a ValueError."""
    if not train_in_full:
        return resolve_language_model_dtype(name, device)
    if name not in ("auto", "float32"):
        raise ValueError(
            f"language_model_dtype={name!r} applies to LoRA training; a language model trained in full stays "
            "float32 (use --bf16 for mixed precision)"
        )
    return torch.float32, "a language model trained in full stays float32"


def language_model_parts(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The parts of a `Gaze2ReportForConditionalGeneration` that a language-model dtype applies to: the language
    model and its output layer (the vision tower, scanpath predictor, graph network and projector stay float32)."""
    return model.model.language_model, model.get_output_embeddings()


def cast_language_model(model, dtype: torch.dtype) -> None:
    """Casts the language-model parts of `model` to `dtype` in place; the visual-gaze tokens follow the language
    model's dtype in `forward`."""
    for part in language_model_parts(model):
        part.to(dtype)


def lower_language_model_precision(model, dtype: torch.dtype) -> dict[tuple[int, str], torch.Tensor]:
    """Casts the language-model parts of `model` (LoRA adapters inside them included) to `dtype`. Returns float32
    copies, on the CPU, of their frozen weights, which `restore_language_model_precision` puts back so that merged
    adapters land on the exact pretrained weights rather than on their rounded copies."""
    frozen_weights = {}
    for index, part in enumerate(language_model_parts(model)):
        for name, parameter in part.named_parameters():
            if not parameter.requires_grad and parameter.dtype == torch.float32:
                frozen_weights[index, name] = parameter.detach().to("cpu", copy=True)
        part.to(dtype)
    return frozen_weights


def restore_language_model_precision(model, frozen_weights: dict[tuple[int, str], torch.Tensor]) -> None:
    """Casts the language-model parts of `model` back to float32 (trained adapters with them) and puts back the frozen
    weights `lower_language_model_precision` kept."""
    with torch.no_grad():
        for index, part in enumerate(language_model_parts(model)):
            part.to(torch.float32)
            for name, parameter in part.named_parameters():
                if (index, name) in frozen_weights:
                    parameter.copy_(frozen_weights[index, name])
