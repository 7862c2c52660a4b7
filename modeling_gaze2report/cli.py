"""The `gaze2report` command: `demo`, `generate`, `train`, `app`, `evaluate`; and `run_command`, the error convention
of every command-line entry (this command and the scripts in examples/)."""

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from huggingface_hub.errors import StrictDataclassFieldValidationError

from .app import add_arguments as add_app_arguments
from .app import run as run_app
from .checks_gaze2report import check_positive_integer
from .inference_gaze2report import DEFAULT_MAX_NEW_TOKENS


def generate(
    images: list[str], model_dir: str, as_json: bool, overlay_dir: str | None, max_new_tokens: int, batch_size: int
) -> None:
    """Prints a report per image (or a JSON object per line with the scanpath in original pixels and, for a model with
    the fixation-node head, the grounding of each sentence, which the overlays colour)."""
    import modeling_gaze2report  # noqa: F401  (registers the pipeline task)

    from .data.render import render_scanpath
    from .image_loading_gaze2report import load_image
    from .pipeline_gaze2report import gaze2report_pipeline

    check_positive_integer("--max-new-tokens", max_new_tokens)
    check_positive_integer("--batch-size", batch_size)
    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"--model {model_dir} is not a directory (a saved Gaze2Report model)")
    missing = [image for image in images if not Path(image).is_file()]
    if missing:
        raise FileNotFoundError(f"Image file(s) not found: {', '.join(missing)}")
    overlays = overlay_paths(images, Path(overlay_dir)) if overlay_dir is not None else [None] * len(images)
    pipe = gaze2report_pipeline(model_dir)
    grounded = pipe.model.config.grounds_findings
    results = pipe(images, batch_size=batch_size, max_new_tokens=max_new_tokens, return_grounding=grounded)
    for image, overlay, [result] in zip(images, overlays, results):
        scanpath = result.get("scanpath", [])
        if overlay is not None:
            render_scanpath(load_image(image), [], predicted=scanpath, path=overlay, grounding=result.get("grounding"))
        if as_json:
            record = {"image": image, "report": result["report"], "scanpath": scanpath}
            if grounded:
                record["grounding"] = result["grounding"]
            print(json.dumps({**record, "overlay": str(overlay)} if overlay is not None else record))
        else:
            print(f"== {image}\n{result['report']}\n" + (f"(overlay: {overlay})\n" if overlay is not None else ""))


def overlay_paths(images: list[str], folder: Path) -> list[Path]:
    """One PNG per image in `folder`, named by `overlay_file_names` (the image's stem, `x.png`; `x-2.png`, `x-3.png`...
    for later images of the same stem, skipping a name an earlier image took). Checked before any generation: the
    folder must be (or become) a writable folder, and no overlay may already exist there: nothing in it is
    overwritten."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--overlay {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--overlay {folder} cannot be created: {error}") from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"--overlay {folder} is not writable")
    from .data.render import overlay_file_names

    paths = [folder / name for name in overlay_file_names(images)]
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        raise ValueError(f"--overlay would overwrite {', '.join(existing)}; remove them or choose another folder")
    return paths


# a config field of the wrong type (`--config_overrides '{"use_gaze": "no"}'`) is the user's error too
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
    StrictDataclassFieldValidationError,
)


class CommandLineError(SystemExit):
    """Ends a command on a user error with exit code 2, as argparse does; its text is the line printed on stderr."""

    def __init__(self, prog: str, message: str):
        super().__init__(2)
        self.line = f"{prog}: error: {' '.join(message.split())}"

    def __str__(self) -> str:
        return self.line


def run_command(main: Callable[[list[str] | None], object], prog: str, argv: list[str] | None = None):
    """Runs `main(argv)`, the entry of the command-line program `prog`, and returns what it returns. A user error (one
    of USER_ERRORS, json.JSONDecodeError included, or a SystemExit carrying a message) is printed as one line
    `{prog}: error: {message}` on stderr and ends the program with exit code 2 (a CommandLineError), as argparse does;
    any other exception keeps its traceback."""
    try:
        return main(argv)
    except USER_ERRORS as error:
        message = str(error) or type(error).__name__
    except SystemExit as exit:
        if not isinstance(exit.code, str):
            raise
        message = exit.code
    error = CommandLineError(prog, message)
    print(error, file=sys.stderr)
    raise error


def evaluate_reports(arguments: argparse.Namespace, clinical_metrics: list[str]) -> None:
    """`gaze2report evaluate`: the literature's table (BLEU-1..4, METEOR, ROUGE-L, CIDEr, the offline labeler's
    CheXpert F1, and the model-based `clinical_metrics` where their package and weights are present), each column with
    its bootstrap interval over studies; with --compare, two models' paired differences with intervals and permutation
    p-values. Prints Markdown (a metric that could not run shows n/a, with the reason below) and writes the full
    results with their protocols to --output (JSON) when given."""
    from .evaluation.report_files import paired_report_files, read_report_pairs
    from .evaluation.report_table import compare_table, markdown_comparison, markdown_table, report_table
    from .files import write_text_atomically

    options = {
        "clinical_metrics": clinical_metrics,
        "normalization": arguments.normalization,
        "uncertain_as": arguments.uncertain_as,
        "num_resamples": arguments.num_resamples,
    }
    if arguments.compare:
        path_a, path_b = arguments.compare
        pairs = paired_report_files(path_a, path_b, arguments.references, arguments.split)
        results = compare_table(pairs["generated_a"], pairs["generated_b"], pairs["references"], **options)
        text = markdown_comparison(results, Path(path_a).stem, Path(path_b).stem)
        results["files"] = {"a": path_a, "b": path_b}
    else:
        pairs = read_report_pairs(arguments.reports, arguments.references, arguments.split)
        results = report_table(pairs["generated"], pairs["references"], **options)
        text = markdown_table(results)
        results["file"] = arguments.reports
    if pairs["references_without_report"]:
        unscored = pairs["references_without_report"]
        text += f"{unscored} references of {arguments.references} have no report: not scored\n"
    results["references"] = arguments.references
    results["references_without_report"] = pairs["references_without_report"]
    print(text, end="")
    if arguments.output is not None:
        write_text_atomically(arguments.output, json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    """`gaze2report demo|generate|train|app|evaluate ...` (argv: the arguments after the program's name; None:
    sys.argv[1:])."""
    run_command(command, "gaze2report", argv)


def command(argv: list[str] | None) -> None:
    """Parses the arguments and runs the subcommand; user errors propagate as exceptions (`main` reports them)."""
    parser = argparse.ArgumentParser(prog="gaze2report", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="Offline main job: synthetic data, training, reports, metrics.")
    demo.add_argument("--preset", default="demo-smollm2", help="demo-smollm2 (real SmolLM2-135M) or tiny (smoke run)")
    demo.add_argument("--output", default="outputs/demo", help="Output folder.")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--num-studies", type=int, default=None, help="Synthetic studies (default: the preset's).")
    demo.add_argument("--steps", type=int, default=None, help="Report-generation training steps (default: preset's).")
    gen = commands.add_parser("generate", help="Write reports for PNG, JPEG or DICOM images.")
    gen.add_argument("images", nargs="+")
    gen.add_argument("--model", required=True, help="A saved Gaze2Report model directory.")
    gen.add_argument("--json", action="store_true", help="One JSON object per image: image, report, scanpath.")
    gen.add_argument("--overlay", default=None, help="Folder for PNG overlays of the predicted scanpaths.")
    gen.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    gen.add_argument("--batch-size", type=int, default=1)
    commands.add_parser("train", help="The example Trainer script; see `gaze2report train --help`.", add_help=False)
    app = commands.add_parser("app", help="The interactive Gradio app: upload an X-ray, read the report, see the gaze.")
    add_app_arguments(app)
    evaluation = commands.add_parser(
        "evaluate", help="Score generated reports against references (a JSONL or CSV of id, generated, reference)."
    )
    evaluation.add_argument("reports", nargs="?", help="JSONL or CSV with id, generated_report (, reference_report).")
    evaluation.add_argument(
        "--references",
        default=None,
        help="References joined by id: a JSONL/CSV of id, reference_report; an R2Gen annotation.json; or a saved "
        "datasets folder (columns id, report).",
    )
    evaluation.add_argument("--split", default="test", help="The split of --references to read (default: test).")
    evaluation.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), default=None, help="Two models' reports: paired differences A - B."
    )
    evaluation.add_argument(
        "--clinical-metrics",
        default=None,
        help="Comma-separated model-based metrics besides the offline labeler (default: chexbert,bertscore,radgraph) "
        "or 'none'.",
    )
    evaluation.add_argument(
        "--normalization", default="r2gen", choices=("r2gen", "ptb"), help="Text normalisation of the NLG metrics."
    )
    evaluation.add_argument(
        "--uncertain-as", type=int, default=0, choices=(0, 1), help="The offline labeler's uncertain label (default 0)."
    )
    evaluation.add_argument("--num-resamples", type=int, default=1000, help="Bootstrap and permutation resamples.")
    evaluation.add_argument("--output", default=None, help="JSON file for the full results and protocols.")
    evaluation.add_argument(
        "--fetch-weights", action="store_true", help="Download the clinical metrics' weights (online) and exit."
    )
    arguments, rest = parser.parse_known_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if arguments.command == "train":
        from .training import main as train_main

        train_main(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if arguments.command == "app":
        run_app(arguments)
        return
    if arguments.command == "evaluate":
        from .evaluation.clinical_metrics import CLINICAL_METRIC_NAMES, fetch_weights

        chosen = arguments.clinical_metrics
        names = [] if chosen == "none" else list(CLINICAL_METRIC_NAMES) if chosen is None else chosen.split(",")
        if arguments.fetch_weights:
            fetch_weights(names)
        elif (arguments.reports is None) == (arguments.compare is None):
            parser.error("evaluate: give one reports file, or --compare A B (or --fetch-weights)")
        elif arguments.num_resamples < 1:
            parser.error(f"evaluate: --num-resamples must be >= 1, got {arguments.num_resamples}")
        else:
            evaluate_reports(arguments, names)
        return
    if arguments.command == "demo":
        from .demo import run_demo

        summary = run_demo(
            arguments.output,
            preset=arguments.preset,
            seed=arguments.seed,
            num_studies=arguments.num_studies,
            report_steps=arguments.steps,
        )
        print(json.dumps({key: summary[key] for key in ("language_model_dtype", "headline", "timings")}, indent=2))
        print(f"Wrote {arguments.output}/: model/, reports.jsonl, metrics.json, metrics.md, overlays/")
    else:
        generate(
            arguments.images,
            arguments.model,
            arguments.json,
            arguments.overlay,
            arguments.max_new_tokens,
            arguments.batch_size,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
