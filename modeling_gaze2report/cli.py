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
    grounded = pipe.model.config.use_fixation_findings
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


REPORT_PAIR_FIELDS = ("id", "generated_report", "reference_report")


def read_report_pairs(path: str) -> list[dict]:
    """The rows of a JSONL (one object per line) or CSV (a header line) file of `path`, each with REPORT_PAIR_FIELDS:
    a study id and its generated and reference report (strings)."""
    import csv

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such file (a JSONL or CSV of {', '.join(REPORT_PAIR_FIELDS)})")
    if file.suffix.lower() == ".csv":
        with open(file, newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    elif file.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: line {number} is not JSON ({error.msg})") from None
    else:
        raise ValueError(f"{path}: expected a .jsonl or .csv file")
    if not rows:
        raise ValueError(f"{path}: no report pairs")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {number} is not an object with {', '.join(REPORT_PAIR_FIELDS)}")
        missing = [field for field in REPORT_PAIR_FIELDS if not isinstance(row.get(field), str)]
        if missing:
            raise ValueError(f"{path}: row {number} has no string {', '.join(missing)}")
    return rows


def evaluate_reports(path: str, clinical_metrics: list[str], output: str | None) -> None:
    """Scores the report pairs of `path`: BLEU-1..4, METEOR, ROUGE-L, CIDEr and the offline labeler's CheXpert F1
    (the default), plus the model-based `clinical_metrics` where their package and weights are present; prints one
    Markdown table (a metric that could not run shows n/a, with the reason below) and writes the full results with
    their protocols to `output` (JSON) when given."""
    from .evaluation import score_clinical_metrics
    from .files import write_text_atomically
    from .reporting import score_records

    rows = read_report_pairs(path)
    generated = [row["generated_report"] for row in rows]
    references = [row["reference_report"] for row in rows]
    report_scores = score_records(rows)  # the same NLG and offline-labeler scores as the demo's and the evaluation's
    nlg, efficacy = report_scores["report_nlg"], report_scores["clinical_efficacy"]
    clinical = score_clinical_metrics(generated, references, metrics=clinical_metrics)
    scores = clinical["scores"]
    columns = {
        "BLEU-1": nlg["bleu_1"],
        "BLEU-2": nlg["bleu_2"],
        "BLEU-3": nlg["bleu_3"],
        "BLEU-4": nlg["bleu_4"],
        "METEOR": nlg["meteor"],
        "ROUGE-L": nlg["rouge_l"],
        "CIDEr": nlg["cider"],
        "Offline labeler micro-F1 (14)": efficacy["micro_f1"],
        "Offline labeler macro-F1 (14)": efficacy["macro_14_f1"],
    }
    if "chexbert" in clinical_metrics:
        chexbert = scores.get("chexbert", {})
        for observations in (14, 5):
            for average in ("micro", "macro"):
                key = f"chexbert_{observations}_{average}_f1"
                columns[f"CheXbert {average}-F1 ({observations})"] = chexbert.get(key)
    if "bertscore" in clinical_metrics:
        columns["BERTScore F1"] = scores.get("bertscore", {}).get("bertscore_f1")
    cells = ["n/a" if value is None else f"{value:.4f}" for value in columns.values()]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    print("| " + " | ".join(cells) + " |")
    print(f"{len(rows)} studies; offline labeler: gaze2report's rule-based CheXpert labeler (uncertain as negative)")
    for name, reason in clinical["unavailable"].items():
        print(f"n/a {name}: {reason}")
    if output is not None:
        results = {
            "num_studies": len(rows),
            "table": columns,
            "report_nlg": nlg,
            "offline_labeler": efficacy,
            "clinical_metrics": clinical,
        }
        write_text_atomically(output, json.dumps(results, indent=2) + "\n")


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
    evaluation.add_argument("reports", nargs="?", help="JSONL or CSV with id, generated_report, reference_report.")
    evaluation.add_argument(
        "--clinical-metrics",
        default=None,
        help="Comma-separated model-based metrics besides the offline labeler (default: chexbert,bertscore) or 'none'.",
    )
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
        elif arguments.reports is None:
            parser.error("evaluate: give a reports file (or --fetch-weights)")
        else:
            evaluate_reports(arguments.reports, names, arguments.output)
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
