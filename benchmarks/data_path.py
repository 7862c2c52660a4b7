"""Images per second per CPU core of the data path, from an image file to model input, and the data time of a stage-2
epoch with and without DataLoader workers.

    HF_HUB_OFFLINE=1 python -m benchmarks.data_path --output benchmarks/results/data_path.json

One process, `torch.set_num_threads(1)` (--threads): each figure is one core's. Inputs: a MIMIC-CXR-size JPEG
(2544 x 3056, quality 95, a synthetic grayscale radiograph with structure, made in a temporary folder), pydicom-data's
RG1_UNCR.dcm (15-bit MONOCHROME1, 1841 x 1955; left out where pydicom-data is not installed) and a cached example.
Per input, the median of `load_image` alone and, per image size, of `processor(images=[image])` end to end (load,
resize, rescale, normalise, prompt) with a processor of that size (a ViTImageProcessorPil and the tiny tokenizer).
The cached example is the JPEG in the preprocessing cache (`build_image_cache`: resized by the processor, stored as a
PNG in a `datasets` Arrow dataset): its "load" is reading one row as the collator does.

The epoch: the demo's training split (`demo.run.demo_dataset`) batched by stage 2's collator in a DataLoader with 0
workers and with `default_dataloader_workers` for this machine. Per worker count, the wall time of iterating the
whole epoch, and the time the loop waits for its batches when each batch is followed by a stand-in training step
(--step-ms of one-thread matrix products in the main process): what the training loop loses to data.
"""

import importlib.util
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from modeling_gaze2report import Gaze2ReportProcessor
from modeling_gaze2report.data import Gaze2ReportCollator, build_image_cache
from modeling_gaze2report.data.collator import example_image_source
from modeling_gaze2report.demo.run import demo_budget, demo_dataset
from modeling_gaze2report.image_loading_gaze2report import load_image
from modeling_gaze2report.presets import build_from_preset, data_root
from modeling_gaze2report.training import DataArguments
from modeling_gaze2report.training.arguments import machine_dataloader_workers

from .common import benchmark_parser, cpu_name, environment, parse_arguments, write_json

MIMIC_SIZE = (2544, 3056)  # (width, height) of a typical MIMIC-CXR-JPG image
JPEG_QUALITY = 95


def find_rg1_uncr() -> Path | None:
    """pydicom-data's RG1_UNCR.dcm, or None when pydicom-data is not installed."""
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "RG1_UNCR.dcm"
    return path if path.is_file() else None


def synthetic_radiograph(width: int, height: int, seed: int) -> Image.Image:
    """A mode "L" `width` x `height` image with a radiograph's kind of structure (a bright mediastinum, two dark lung
    fields crossed by ribs, soft gradients, fine noise), so that JPEG compresses it as it does a chest X-ray."""
    rng = np.random.default_rng(seed)
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    lungs = np.exp(-((((np.abs(x) - 0.45) / 0.3) ** 2 + ((y + 0.05) / 0.6) ** 2) ** 2))
    ribs = 0.5 + 0.5 * np.sin(40 * y + 6 * x**2)
    image = 170 - 110 * lungs + 25 * lungs * ribs + 30 * np.exp(-((x / 0.12) ** 2)) - 40 * y
    image += rng.normal(0, 6, (height, width)).astype(np.float32)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L")


def median_ms(call, repeats: int) -> float:
    """The median milliseconds of `call()` over `repeats` calls, after one untimed call."""
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds)


def processor_of_size(image_size: int) -> Gaze2ReportProcessor:
    """A processor that resizes to `image_size` x `image_size` (a ViTImageProcessorPil, mean and std 0.5) with the
    tiny processor's tokenizer."""
    return Gaze2ReportProcessor.from_pretrained_backbones(
        None, str(data_root() / "processors" / "tiny"), image_size=image_size
    )


def file_figures(path: Path, processors: dict[int, Gaze2ReportProcessor], repeats: int) -> dict:
    """`load_image` alone and, per image size, `processor(images=[path])` end to end, in median ms and images/s."""
    sizes = {}
    for size, processor in processors.items():
        processor_ms = median_ms(lambda: processor(images=[str(path)]), repeats)
        sizes[str(size)] = {"processor_ms": processor_ms, "images_per_second_per_core": 1000 / processor_ms}
    return {"load_image_ms": median_ms(lambda: load_image(str(path)), repeats), "sizes": sizes}


def cached_figures(source: Path, processors: dict[int, Gaze2ReportProcessor], repeats: int, folder: Path) -> dict:
    """Per image size, the preprocessing cache (`build_image_cache`) of `repeats` examples of the `source` image:
    its build per image (a one-time cost), reading one cached example as the collator does (the row read, its PNG
    decoded, `example_image_source`: "read_ms") and that example through the processor end to end, in median ms
    and per second."""
    examples = datasets.Dataset.from_dict(
        {"id": [f"example-{index}" for index in range(repeats)], "image": [str(source)] * repeats},
        features=datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()}),
    )
    sizes = {}
    for size, processor in processors.items():
        start = time.perf_counter()
        cached, _ = build_image_cache(examples, processor, folder / f"cache_{size}")
        build_ms = 1000 * (time.perf_counter() - start) / repeats
        row_numbers = itertools.count()

        def read(cached=cached, row_numbers=row_numbers):
            return example_image_source(cached[next(row_numbers) % len(cached)], 0)

        read_ms = median_ms(read, repeats)
        processor_ms = median_ms(lambda: processor(images=[read()]), repeats)
        sizes[str(size)] = {
            "build_ms_per_image": build_ms,
            "read_ms": read_ms,
            "examples_per_second_per_core": 1000 / read_ms,
            "processor_ms": processor_ms,
            "images_per_second_per_core": 1000 / processor_ms,
        }
    return {
        "method": "build_image_cache of the JPEG (resized by the processor, stored as PNG in a datasets Arrow "
        "dataset, save_to_disk), read back row by row",
        "sizes": sizes,
    }


def stand_in_step(milliseconds: float) -> None:
    """Keeps the main process's core busy with one-thread matrix products for `milliseconds`."""
    matrix = torch.ones(128, 128)
    end = time.perf_counter() + milliseconds / 1000
    while time.perf_counter() < end:
        matrix = (matrix @ matrix).clamp_(max=1.0)


def epoch_figures(preset: str, num_studies: int | None, step_ms: float, seed: int) -> dict:
    """A stage-2 epoch of the demo's training split for `preset`, its collator as stage 2 builds it, iterated in a
    DataLoader with 0 workers and with `machine_dataloader_workers`' count: per count, the wall time of the bare
    iteration and, with a `step_ms` stand-in step after each batch, the total time waited for batches."""
    budget = demo_budget(preset, num_studies=num_studies)
    train = demo_dataset(budget, seed, budget.num_studies)["train"]
    model, processor = build_from_preset(preset)
    collator = Gaze2ReportCollator(
        processor,
        gaze_source=DataArguments.gaze_source,
        seed=seed,
        max_report_tokens=DataArguments.max_report_tokens,
        include_fixation_findings=model.config.use_fixation_findings,
    )
    del model
    default_workers, cpus, processes = machine_dataloader_workers()
    runs = {}
    for workers in sorted({0, default_workers}):
        loader = DataLoader(train, batch_size=budget.batch_size, collate_fn=collator, num_workers=workers)
        start = time.perf_counter()
        batches = sum(1 for _ in loader)
        iteration_s = time.perf_counter() - start
        waited_s, start = 0.0, time.perf_counter()
        waiting_since = time.perf_counter()
        for _ in loader:
            waited_s += time.perf_counter() - waiting_since
            stand_in_step(step_ms)
            waiting_since = time.perf_counter()
        runs[str(workers)] = {
            "iteration_s": iteration_s,
            "batches_per_second": batches / iteration_s,
            "with_steps_wall_s": time.perf_counter() - start,
            "with_steps_data_wait_s": waited_s,
        }
    return {
        "preset": preset,
        "training_studies": len(train),
        "image_size": budget.image_size,
        "batch_size": budget.batch_size,
        "batches": batches,
        "stand_in_step_ms": step_ms,
        "available_cpus": cpus,
        "training_processes": processes,
        "default_workers": default_workers,
        "by_workers": runs,
    }


def main(argv=None) -> dict:
    parser = benchmark_parser(__doc__)
    parser.set_defaults(threads=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 518], help="processor image sizes")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure (after one untimed)")
    parser.add_argument("--jpeg-size", type=int, nargs=2, default=list(MIMIC_SIZE), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--epoch-preset", default="demo-smollm2", help="the demo preset whose training split is read")
    parser.add_argument("--epoch-studies", type=int, default=None, help="the demo's studies (default: its budget's)")
    parser.add_argument("--step-ms", type=float, default=100.0, help="the stand-in training step after each batch")
    args = parse_arguments(parser, argv, {"sizes": 1, "repeats": 1, "jpeg_size": 1, "epoch_studies": 1, "step_ms": 0})
    datasets.disable_progress_bars()
    record = {"cpu": cpu_name(), **environment(args), "repeats": args.repeats}
    processors = {size: processor_of_size(size) for size in args.sizes}
    inputs = {}
    with tempfile.TemporaryDirectory() as folder:
        jpeg = Path(folder) / "mimic_size.jpg"
        synthetic_radiograph(*args.jpeg_size, seed=args.seed).save(jpeg, quality=JPEG_QUALITY)
        inputs["jpeg"] = {
            "what": f"synthetic grayscale radiograph, {args.jpeg_size[0]} x {args.jpeg_size[1]}, JPEG quality "
            f"{JPEG_QUALITY}",
            "file_bytes": jpeg.stat().st_size,
            **file_figures(jpeg, processors, args.repeats),
        }
        dicom = find_rg1_uncr()
        if dicom is None:
            inputs["dicom"] = {"what": "RG1_UNCR.dcm", "skipped": "pydicom-data is not installed"}
        else:
            inputs["dicom"] = {"what": f"pydicom-data's {dicom.name}", **file_figures(dicom, processors, args.repeats)}
        inputs["cached"] = cached_figures(jpeg, processors, args.repeats, Path(folder))
    record["inputs"] = inputs
    record["epoch"] = epoch_figures(args.epoch_preset, args.epoch_studies, args.step_ms, args.seed)
    record["load_average_1min_after"] = os.getloadavg()[0]
    if args.output is not None:
        write_json(args.output, record)
    print_summary(record)
    return record


def print_summary(record: dict) -> None:
    print(f"{record['cpu']}, {record['torch_threads']} torch thread(s)")
    for name, figures in record["inputs"].items():
        if "sizes" not in figures:
            print(f"{name}: skipped ({figures['skipped']})")
            continue
        load = f"load_image {figures['load_image_ms']:.1f} ms; " if "load_image_ms" in figures else ""
        for size, values in figures["sizes"].items():
            read = f"read {values['read_ms']:.2f} ms; " if "read_ms" in values else ""
            print(
                f"{name} at {size} px: {load}{read}processor {values['processor_ms']:.1f} ms, "
                f"{values['images_per_second_per_core']:.1f} images/s per core"
            )
    epoch = record["epoch"]
    for workers, values in epoch["by_workers"].items():
        print(
            f"epoch ({epoch['batches']} batches) with {workers} workers: iteration {values['iteration_s']:.2f} s; "
            f"with {epoch['stand_in_step_ms']:.0f} ms steps, {values['with_steps_data_wait_s']:.2f} s waiting for data"
        )


if __name__ == "__main__":
    main()
