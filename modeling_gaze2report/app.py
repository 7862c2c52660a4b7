"""The Gaze2Report app: upload a chest X-ray (DICOM, PNG, JPEG), read the report, step through the predicted scanpath.

    gaze2report app --model outputs/demo/model [--host 127.0.0.1] [--port 7860] [--share]

A Gradio Blocks app around `pipeline("gaze2report")` for any model directory it loads. It works offline: system
fonts, no analytics, nothing fetched (`--share` alone opens a public tunnel). Gradio is imported only when an app is
built, so the library works without it (`pip install "gaze2report[app]"` adds it).

The Gradio API serves the same as endpoint `/generate`: one image file in (optionally the DICOM window centre and
width, max_new_tokens and num_beams); the report, the overlay image and the scanpath JSON file out. Generation
requests queue and run one at a time; every user keeps their own result. Files are written only under temporary
folders (the app's and Gradio's upload cache). A bad upload or setting (a non-finite window, too many tokens or beams,
a file over MAX_UPLOAD_BYTES or an image over MAX_UPLOAD_PIXELS, refused from its header before any decoding) is an
error for that request alone.
"""

import argparse
import json
import math
import numbers
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .checks_gaze2report import check_positive_integer
from .data.render import render_scanpath
from .files import write_text_atomically
from .image_loading_gaze2report import is_dicom, load_image
from .inference_gaze2report import DEFAULT_MAX_NEW_TOKENS

DISPLAY_LONGEST_SIDE = 1024  # the overlay shown in the browser; the scanpath JSON keeps the original pixels
MAX_BEAMS = 4
MAX_NEW_TOKENS = 512  # the slider's end; the API takes no more
MAX_UPLOAD_BYTES = 200 * 2**20
MAX_UPLOAD_PIXELS = 50_000_000  # a chest radiograph has at most about 20 million
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif")
SYSTEM_MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
SYNTHETIC_EXAMPLES = {  # file name -> the findings drawn (make_synthetic_study's finding_kinds)
    "synthetic-pneumothorax.png": ("pneumothorax",),
    "synthetic-effusion-cardiomegaly.png": ("cardiomegaly", "pleural_effusion"),
    "synthetic-no-finding.png": (),
}
API_DESCRIPTION = (
    "One chest X-ray file (DICOM, PNG, JPEG; optionally the DICOM window centre and width, max new "
    "tokens, beams) -> the report, the image with the predicted scanpath, and the scanpath JSON file "
    "(image, width, height, report, scanpath: x and y in original pixels, duration in seconds)."
)
CSS = "#fixation-detail { min-height: 1.5em; }"


@dataclass
class Reading:
    """One user's latest result: the image as shown (longest side at most DISPLAY_LONGEST_SIDE), shown pixels per
    original pixel, the predicted scanpath in original pixels and seconds, and, for a model with the fixation-node
    head, the grounding of the report's sentences (the pipeline's `return_grounding`)."""

    image: Image.Image
    scale: float
    scanpath: list[dict]
    grounding: list[dict] | None = None


def import_gradio():
    """Imports gradio with its usage analytics and version check off."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as error:
        raise ImportError('The Gaze2Report app needs gradio: pip install "gaze2report[app]"') from error
    return gradio


def read_dicom_window(path: str | os.PathLike) -> tuple[float | None, float | None]:
    """The first Window Center and Window Width of a DICOM file, or (None, None) for a file that is no DICOM or has
    no window (its VOI LUT or the loader's percentile window then applies)."""
    import pydicom

    path = Path(path)
    if not is_dicom(path):
        return None, None
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as error:
        raise ValueError(f"Cannot read DICOM file {path}: {type(error).__name__}: {error}") from error
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return None, None
    return first_value(dataset.WindowCenter), first_value(dataset.WindowWidth)


def first_value(value) -> float:
    """A DICOM value as a float: the first of a multi-valued element."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue) else value)


def check_upload(path: str | os.PathLike) -> None:
    """Refuses, before anything is decoded, a file over MAX_UPLOAD_BYTES or an image whose header declares more than
    MAX_UPLOAD_PIXELS pixels. A header that cannot be read is left to `load_image`, which names the problem."""
    path = Path(path)
    if not path.is_file():
        return
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{path} has {size:,} bytes; the app takes files of at most {MAX_UPLOAD_BYTES:,} bytes")
    width, height = declared_size(path)
    if width * height > MAX_UPLOAD_PIXELS:
        raise ValueError(
            f"{path} is a {width}x{height} image ({width * height:,} pixels); the app takes images of at most "
            f"{MAX_UPLOAD_PIXELS:,} pixels"
        )


def declared_size(path: Path) -> tuple[int, int]:
    """(width, height) as the file's header declares it, without decoding the pixels; (0, 0) when unreadable."""
    if is_dicom(path):
        import pydicom

        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            return int(dataset.get("Columns", 0) or 0), int(dataset.get("Rows", 0) or 0)
        except Exception:
            return 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                return image.size
        except Image.DecompressionBombError as error:
            raise ValueError(f"{path} is too large to decode: {error}") from error
        except Exception:
            return 0, 0


def check_window_value(name: str, value) -> None:
    """Refuses a DICOM window `value` (centre or width, by `name`) that is set but no finite number."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"The window {name} must be a finite number, got {value!r}")


def load_chest_xray(
    path: str | os.PathLike, window_centre: float | None = None, window_width: float | None = None
) -> Image.Image:
    """`load_image(path)` of an upload that passes `check_upload`; for a DICOM file with `window_centre` and
    `window_width` (finite numbers), that window replaces the file's VOI (its window and VOI LUT) before the same
    loading rules apply (the upload is not changed)."""
    check_window_value("centre", window_centre)
    check_window_value("width", window_width)
    if (window_centre is None) != (window_width is None):
        raise ValueError(
            f"Give both the window centre and width, or neither (got centre {window_centre!r}, width {window_width!r})"
        )
    check_upload(path)
    if window_centre is None:
        return load_image(path)
    return load_image(path, window=(window_centre, window_width))


def check_generation_settings(max_new_tokens, num_beams) -> None:
    """Refuses a `/generate` request's max_new_tokens outside 1..MAX_NEW_TOKENS or num_beams outside 1..MAX_BEAMS
    (NaN, infinities and fractions included), naming the setting."""
    for name, value, most in (("max_new_tokens", max_new_tokens, MAX_NEW_TOKENS), ("num_beams", num_beams, MAX_BEAMS)):
        check_positive_integer(name, value)
        if value > most:
            raise ValueError(f"{name} must be at most {most} in the app, got {value}")


def shown_image(image: Image.Image) -> tuple[Image.Image, float]:
    """The image as the browser shows it (longest side at most DISPLAY_LONGEST_SIDE) and its scale."""
    scale = min(1.0, DISPLAY_LONGEST_SIDE / max(image.size))
    if scale == 1.0:
        return image, scale
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS), scale


def render_reading(reading: Reading, fixations_shown: int | None = None) -> Image.Image:
    """The shown image with the first `fixations_shown` predicted fixations (all when None): numbered circles whose
    radius grows with the duration, joined in viewing order (`render_scanpath`'s predicted scanpath), each in the colour
    of the sentence it supports, with the sentences' legend."""
    count = len(reading.scanpath) if fixations_shown is None else fixations_shown
    predicted = [
        {"x": point["x"] * reading.scale, "y": point["y"] * reading.scale, "duration": point["duration"]}
        for point in reading.scanpath[:count]
    ]
    grounding = None
    if reading.grounding is not None:
        grounding = [
            {**entry, "fixations": [index for index in entry["fixations"] if index < count]}
            for entry in reading.grounding
        ]
    return render_scanpath(reading.image, [], predicted=predicted, grounding=grounding)


def describe_fixation(reading: Reading, number: int) -> str:
    """'Fixation 3 of 12: x 812, y 1030 (original pixels), 0.41 s' for fixation `number` (from 1)."""
    point = reading.scanpath[number - 1]
    supported = [entry["sentence"] for entry in reading.grounding or [] if number - 1 in entry["fixations"]]
    return (
        f"**Fixation {number} of {len(reading.scanpath)}**: x {point['x']:.0f}, y {point['y']:.0f} "
        f"(original pixels), {point['duration']:.2f} s" + "".join(f"; supports “{sentence}”" for sentence in supported)
    )


def make_examples(folder: Path) -> list[Path]:
    """pydicom-data's RG1_UNCR.dcm (a real 15-bit MONOCHROME1 chest radiograph; left out when pydicom-data is not
    installed) and the SYNTHETIC_EXAMPLES studies drawn by the synthetic world as PNGs in `folder`."""
    from pydicom.data import get_testdata_file

    from .data.render import save_png
    from .data.synthetic import make_synthetic_study

    examples = []
    real = get_testdata_file("RG1_UNCR.dcm", download=False)
    if real is not None:
        examples.append(Path(real))
    for index, (name, finding_kinds) in enumerate(SYNTHETIC_EXAMPLES.items()):
        example, _ = make_synthetic_study((0, index), image_size=512, finding_kinds=finding_kinds, study_id=name)
        save_png(example["image"], folder / name)
        examples.append(folder / name)
    return examples


class Gaze2ReportApp:
    """The app for one model directory: the pipeline, the examples, a temporary folder and the Gradio Blocks.

    ```python
    app = Gaze2ReportApp("outputs/demo/model")
    app.launch(host="127.0.0.1", port=7860)        # blocks; block=False returns once the server is up
    ```
    """

    def __init__(self, model_dir: str | os.PathLike, language_model_dtype: str = "auto"):
        from .pipeline_gaze2report import gaze2report_pipeline

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ValueError(f"{model_dir} is not a saved Gaze2Report model directory (it has no config.json)")
        self.gradio = import_gradio()
        self.pipe = gaze2report_pipeline(self.model_dir, language_model_dtype=language_model_dtype)
        self.temporary_folder = tempfile.TemporaryDirectory(prefix="gaze2report-app-")
        self.examples = make_examples(Path(self.temporary_folder.name))
        self.blocks = self.build_blocks()

    def build_blocks(self):
        gr = self.gradio
        has_gaze = self.pipe.model.config.use_gaze
        with gr.Blocks(title="Gaze2Report", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
            gr.Markdown(
                "# Gaze2Report\nUpload a chest X-ray (DICOM, PNG or JPEG), press **Generate**, read the report and "
                "step through the scanpath the model predicts a radiologist would follow. "
                f"Model: `{self.model_dir}` (language model in "
                f"{str(self.pipe.language_model_dtype).removeprefix('torch.')}). "
                "Research code, not for clinical use."
            )
            reading = gr.State(None)
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=320):
                    image_file = gr.File(
                        label="Chest X-ray (DICOM, PNG, JPEG)", type="filepath", height=120, elem_id="image-file"
                    )
                    with gr.Accordion("DICOM window", open=False):
                        with gr.Row():
                            window_centre = gr.Number(label="Centre", value=None, interactive=True)
                            window_width = gr.Number(label="Width", value=None, minimum=1, interactive=True)
                        gr.Markdown(
                            "Filled in from the DICOM file's window; empty: its VOI LUT or a percentile "
                            "window. Press Enter to preview. Not used for PNG and JPEG."
                        )
                    with gr.Accordion("Generation", open=False):
                        max_new_tokens = gr.Slider(
                            1, MAX_NEW_TOKENS, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens"
                        )
                        num_beams = gr.Slider(1, MAX_BEAMS, value=1, step=1, label="Beams")
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    report = gr.Textbox(label="Report", lines=8, interactive=False, buttons=["copy"], elem_id="report")
                    gr.Examples(
                        examples=[[str(path)] for path in self.examples],
                        inputs=[image_file],
                        label="Examples: pydicom-data's RG1_UNCR.dcm and synthetic studies",
                    )
                with gr.Column(scale=3, min_width=400):
                    overlay = gr.Image(
                        label="Predicted scanpath" if has_gaze else "Image",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=640,
                        buttons=["download", "fullscreen"],
                        elem_id="overlay",
                    )
                    fixations_shown = gr.Slider(
                        1, 2, value=1, step=1, label="Fixations shown", visible=False, elem_id="fixations-shown"
                    )
                    fixation_detail = gr.Markdown(elem_id="fixation-detail")
                    scanpath_file = gr.File(
                        label="Scanpath JSON (original pixels, seconds)", interactive=False, elem_id="scanpath-file"
                    )

            image_file.change(
                self.preview,
                inputs=[image_file],
                outputs=[
                    window_centre,
                    window_width,
                    overlay,
                    report,
                    scanpath_file,
                    reading,
                    fixations_shown,
                    fixation_detail,
                ],
                api_visibility="private",
                concurrency_limit=None,
            )
            gr.on(
                [window_centre.submit, window_width.submit],
                self.preview_window,
                inputs=[image_file, window_centre, window_width],
                outputs=[overlay, reading, fixations_shown, fixation_detail],
                api_visibility="private",
                concurrency_limit=None,
            )
            generate_button.click(
                self.generate,
                inputs=[image_file, window_centre, window_width, max_new_tokens, num_beams],
                outputs=[report, overlay, scanpath_file, reading],
                api_name="generate",
                api_description=API_DESCRIPTION,
                concurrency_limit=1,
            ).success(
                self.reset_fixation_slider,
                inputs=[reading],
                outputs=[fixations_shown, fixation_detail],
                api_visibility="private",
                concurrency_limit=None,
            )
            fixations_shown.input(
                self.show_fixations,
                inputs=[reading, fixations_shown],
                outputs=[overlay, fixation_detail],
                api_visibility="private",
                concurrency_limit=None,
                trigger_mode="always_last",
            )
        return blocks

    def launch(self, host: str | None = None, port: int | None = None, share: bool = False, block: bool = True):
        """Serves the app (queued) at `host`:`port` (Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else
        127.0.0.1:7860, when None). `block=False` returns once the server is up; `close()` stops it."""
        gr = self.gradio
        theme = gr.themes.Default(primary_hue="cyan", font=list(SYSTEM_FONTS), font_mono=list(SYSTEM_MONO_FONTS))
        self.blocks.queue(default_concurrency_limit=1)
        self.blocks.launch(
            server_name=host,
            server_port=port,
            share=share,
            prevent_thread_lock=not block,
            quiet=not block,
            show_error=True,
            ssr_mode=False,
            theme=theme,
            css=CSS,
            allowed_paths=[str(path) for path in self.examples],
            max_file_size=MAX_UPLOAD_BYTES,
            footer_links=["api", "settings"],
        )

    def close(self):
        self.blocks.close()
        self.temporary_folder.cleanup()

    def error(self, error: Exception, image_file: str):
        """A Gradio error whose message names the upload by its own name, not its path in Gradio's cache."""
        return self.gradio.Error(str(error).replace(str(image_file), Path(image_file).name))

    def preview(self, image_file):
        """On upload: the file's DICOM window in the window fields, the image without scanpath, old results cleared."""
        gr = self.gradio
        cleared = ("", None, None, gr.Slider(visible=False), "")
        if image_file is None:
            return (None, None, None) + cleared
        try:
            centre, width = read_dicom_window(image_file)
            image, _ = shown_image(load_chest_xray(image_file, centre, width))
        except (ValueError, FileNotFoundError) as error:
            raise self.error(error, image_file) from error
        return (centre, width, image) + cleared

    def preview_window(self, image_file, window_centre, window_width):
        """The image under the typed window (the last scanpath no longer matches it and is put away)."""
        gr = self.gradio
        if image_file is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            image, _ = shown_image(load_chest_xray(image_file, window_centre, window_width))
        except (ValueError, FileNotFoundError) as error:
            raise self.error(error, image_file) from error
        return image, None, gr.Slider(visible=False), ""

    def generate(
        self, image_file, window_centre=None, window_width=None, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, num_beams=1
    ):
        """The Generate button and the `/generate` endpoint: (report, overlay image, scanpath JSON file, the user's
        Reading; the State is not part of the API)."""
        if image_file is None:
            raise self.gradio.Error("No image: upload a chest X-ray (DICOM, PNG or JPEG) or pick an example.")
        try:
            check_generation_settings(max_new_tokens, num_beams)
            image = load_chest_xray(image_file, window_centre, window_width)
            [result] = self.pipe(
                image,
                max_new_tokens=max_new_tokens,
                generate_kwargs={"num_beams": num_beams},
                return_grounding=self.pipe.model.config.grounds_findings,
            )
        except (ValueError, FileNotFoundError) as error:
            raise self.error(error, image_file) from error
        shown, scale = shown_image(image)
        reading = Reading(
            image=shown, scale=scale, scanpath=result.get("scanpath", []), grounding=result.get("grounding")
        )
        record = {
            "image": Path(image_file).name,
            "width": image.width,
            "height": image.height,
            "report": result["report"],
            "scanpath": reading.scanpath,
        }
        if reading.grounding is not None:
            record["grounding"] = reading.grounding
        folder = Path(tempfile.mkdtemp(prefix="result-", dir=self.temporary_folder.name))
        scanpath_path = folder / f"{Path(image_file).stem}-scanpath.json"
        write_text_atomically(scanpath_path, json.dumps(record, indent=2) + "\n")
        return result["report"], render_reading(reading), str(scanpath_path), reading

    def reset_fixation_slider(self, reading):
        """After a generation: the slider spans the new scanpath and stands at its last fixation (hidden for a
        scanpath of fewer than two fixations)."""
        gr = self.gradio
        if reading is None or not reading.scanpath:
            return gr.Slider(visible=False), ""
        count = len(reading.scanpath)
        if count == 1:
            return gr.Slider(visible=False), describe_fixation(reading, count)
        return gr.Slider(minimum=1, maximum=count, value=count, visible=True), describe_fixation(reading, count)

    def show_fixations(self, reading, fixations_shown):
        """The slider moved: the first `fixations_shown` fixations drawn, the last of them described."""
        gr = self.gradio
        if reading is None or not reading.scanpath:
            return gr.skip(), gr.skip()
        check_positive_integer("fixations shown", fixations_shown)
        count = min(fixations_shown, len(reading.scanpath))
        return render_reading(reading, count), describe_fixation(reading, count)


def add_arguments(parser: argparse.ArgumentParser, default_model: str | os.PathLike | None = None) -> None:
    """The app's command-line arguments (`gaze2report app` and examples/app.py); --model is required unless
    `default_model` is given."""
    parser.add_argument(
        "--model",
        required=default_model is None,
        default=default_model,
        help="A saved Gaze2Report model directory"
        + (f" (default: {default_model})." if default_model is not None else "."),
    )
    parser.add_argument(
        "--host",
        default=None,
        help="Address to serve at (default: GRADIO_SERVER_NAME or 127.0.0.1; 0.0.0.0 serves other machines).",
    )
    parser.add_argument("--port", type=port_number, default=None, help="Port (default: GRADIO_SERVER_PORT or 7860).")
    parser.add_argument("--share", action="store_true", help="Also open a public Gradio share link (needs internet).")


def port_number(text: str) -> int:
    """The type of --port: a TCP port, 1 to 65535, so that a bad one is refused before the app is built."""
    port = int(text)  # a ValueError: argparse says "invalid port_number value"
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {port}")
    return port


def main(argv: list[str] | None = None, default_model: str | os.PathLike | None = None) -> None:
    """`python app.py [--model DIR] [--host HOST] [--port PORT] [--share]` (examples/app.py, a Space's app.py)."""
    parser = argparse.ArgumentParser(description="Serve the Gaze2Report app for one model directory.")
    add_arguments(parser, default_model)
    run(parser.parse_args(argv))


def run(arguments: argparse.Namespace) -> None:
    """Builds the app for `arguments.model` and serves it until interrupted; a model directory that does not load or
    a missing gradio ends the command with the reason."""
    try:
        app = Gaze2ReportApp(arguments.model)
    except (ValueError, OSError, ImportError) as error:
        raise SystemExit(str(error)) from error
    app.launch(host=arguments.host, port=arguments.port, share=arguments.share)
