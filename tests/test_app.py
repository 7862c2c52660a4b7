"""The Gradio app (`gaze2report app`): its `/generate` API on a live server, its DICOM window, its CLI and its lazy
gradio import."""

import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration, load_image
from modeling_gaze2report.app import (
    Gaze2ReportApp,
    import_gradio,
    load_chest_xray,
    read_dicom_window,
    shown_image,
)
from modeling_gaze2report.cli import main as cli_main
from modeling_gaze2report.data.render import PREDICTED_COLOUR

from .conftest import REPOSITORY_ROOT


def save_app_model(directory, processor):
    """The tiny random model with every scanpath slot decoded as valid (validity bias +10), so each image gets a
    scanpath of max_fixations (16) fixations to draw and step through."""
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig()).eval()
    with torch.no_grad():
        model.model.scanpath_predictor.validity_head.bias.fill_(10.0)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_loopback(host) -> bool:
    return str(host) in ("localhost", "::1", "") or str(host).startswith("127.")


@pytest.fixture(scope="module")
def outbound_attempts():
    """Every connection or name lookup to a host other than the loopback while the module runs; each is refused."""
    attempts = []
    original_connect, original_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            attempts.append(address)
            raise OSError(f"test: no network ({address})")
        return original_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and not is_loopback(host):
            attempts.append(host)
            raise socket.gaierror(f"test: no network ({host})")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.getaddrinfo = guarded_connect, guarded_getaddrinfo
    yield attempts
    socket.socket.connect, socket.getaddrinfo = original_connect, original_getaddrinfo


@pytest.fixture(scope="module")
def served_app(tmp_path_factory, tiny_processor, outbound_attempts):
    model_dir = save_app_model(tmp_path_factory.mktemp("app") / "model", tiny_processor)
    app = Gaze2ReportApp(model_dir)
    port = free_port()
    app.launch(host="127.0.0.1", port=port, block=False)
    yield app, f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def client(served_app, tmp_path_factory):
    from gradio_client import Client

    return Client(served_app[1], download_files=str(tmp_path_factory.mktemp("downloads")), verbose=False)


def generate(client, image, **settings):
    from gradio_client import handle_file

    report, overlay, scanpath_file = client.predict(handle_file(str(image)), **settings, api_name="/generate")
    with open(scanpath_file) as file:
        return report, Image.open(overlay).convert("RGB"), json.load(file)


def predicted_colour_pixels(image: Image.Image) -> int:
    return int((np.abs(np.asarray(image, dtype=np.int16) - PREDICTED_COLOUR).max(axis=-1) < 40).sum())


def test_generate_endpoint_on_rg1_uncr(served_app, client, rg1_uncr):
    app, _ = served_app
    report, overlay, record = generate(client, rg1_uncr)
    assert isinstance(report, str) and report == record["report"]
    width, height = load_image(rg1_uncr).size
    assert (record["image"], record["width"], record["height"]) == ("RG1_UNCR.dcm", width, height)
    [expected] = app.pipe(str(rg1_uncr), max_new_tokens=128)
    assert report == expected["report"]
    assert len(record["scanpath"]) == 16
    for point, expected_point in zip(record["scanpath"], expected["scanpath"], strict=True):
        assert 0 <= point["x"] <= width and 0 <= point["y"] <= height and point["duration"] > 0
        assert point == pytest.approx(expected_point)
    shown, _ = shown_image(load_image(rg1_uncr))
    assert overlay.size == shown.size and max(overlay.size) == 1024
    assert predicted_colour_pixels(overlay) > 500 > predicted_colour_pixels(shown.convert("RGB"))


def test_bad_upload_is_an_error_and_the_server_keeps_serving(client, rg1_uncr, tmp_path):
    from gradio_client.exceptions import AppError

    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(b"not a DICOM file " * 64)
    with pytest.raises(AppError, match=r"corrupt\.dcm is not a DICOM file"):
        generate(client, corrupt)
    text = tmp_path / "notes.png"
    text.write_text("a text file named .png\n")
    with pytest.raises(AppError, match=r"Cannot read image file notes\.png"):
        generate(client, text)
    with pytest.raises(AppError, match="num_beams must be an integer >= 1, got 1.5"):
        generate(client, rg1_uncr, num_beams=1.5)
    report, _, record = generate(client, rg1_uncr, max_new_tokens=4)
    assert isinstance(report, str) and len(record["scanpath"]) == 16


def test_concurrent_requests_are_each_answered_with_their_own_result(served_app, client, rg1_uncr):
    app, _ = served_app
    synthetic = next(path for path in app.examples if path.suffix == ".png")
    results = {}

    def request(image):
        results[image.name] = generate(client, image, max_new_tokens=8)

    threads = [threading.Thread(target=request, args=(image,)) for image in (rg1_uncr, synthetic)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(results) == {rg1_uncr.name, synthetic.name}
    for image in (rg1_uncr, synthetic):
        _, overlay, record = results[image.name]
        width, height = load_image(image).size
        assert (record["image"], record["width"], record["height"]) == (image.name, width, height)
        assert overlay.size == shown_image(load_image(image))[0].size


def test_the_dicom_window_changes_what_the_model_sees(client, rg1_uncr):
    _, default_overlay, default_record = generate(client, rg1_uncr, max_new_tokens=2)
    _, narrow_overlay, narrow_record = generate(
        client, rg1_uncr, window_centre=20000, window_width=4000, max_new_tokens=2
    )
    assert narrow_record["width"] == default_record["width"]
    assert np.abs(np.asarray(narrow_overlay, float) - np.asarray(default_overlay, float)).mean() > 20


def test_no_outbound_network(served_app, client, outbound_attempts):
    assert outbound_attempts == []


def test_window_reproduces_the_files_own_voi_and_replaces_it(rg1_uncr, tmp_path, xray):
    assert read_dicom_window(rg1_uncr) == (15000.0, 30000.0)
    original = np.asarray(load_image(rg1_uncr))
    assert np.array_equal(np.asarray(load_chest_xray(rg1_uncr, 15000, 30000)), original)
    narrow = np.asarray(load_chest_xray(rg1_uncr, 15000, 3000))
    assert narrow.shape == original.shape and narrow.std() > original.std()  # a narrower window: more contrast
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    assert read_dicom_window(png) == (None, None)
    with pytest.raises(ValueError, match=r"DICOM files only; .*chest\.png is no DICOM file"):
        load_chest_xray(png, 100, 50)
    with pytest.raises(ValueError, match="both the window centre and width"):
        load_chest_xray(rg1_uncr, 100, None)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        load_chest_xray(rg1_uncr, 100, 0)


def test_app_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["app", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("--model", "--host", "--port", "--share"))
    with pytest.raises(SystemExit, match=r"missing-model is not a saved Gaze2Report model directory"):
        cli_main(["app", "--model", str(tmp_path / "missing-model")])


def test_missing_gradio_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(ImportError, match=r'pip install "gaze2report\[app\]"'):
        import_gradio()


def test_the_library_and_the_command_do_not_import_gradio():
    code = (
        "import sys, modeling_gaze2report, modeling_gaze2report.app, modeling_gaze2report.cli; "
        "assert 'gradio' not in sys.modules, 'gradio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPOSITORY_ROOT)


def test_with_the_fixation_node_head_the_result_carries_and_draws_the_grounding(tmp_path, tiny_processor, xray):
    from modeling_gaze2report.app import Reading, describe_fixation, render_reading
    from modeling_gaze2report.labeler_gaze2report import report_sentences

    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_fixation_findings=True)).eval()
    model.save_pretrained(tmp_path / "model")
    tiny_processor.save_pretrained(tmp_path / "model")
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    app = Gaze2ReportApp(tmp_path / "model")
    try:
        report, _, scanpath_file, reading = app.generate(str(png), max_new_tokens=16)
        saved = json.loads(open(scanpath_file).read())
    finally:
        app.close()
    assert saved["grounding"] == reading.grounding
    assert [entry["sentence"] for entry in reading.grounding] == report_sentences(report)

    scanpath = [{"x": 10.0 * i + 5, "y": 10.0 * i + 5, "duration": 0.3} for i in range(3)]
    grounded = Reading(image=Image.fromarray(xray), scale=1.0, scanpath=scanpath,
                       grounding=[{"sentence": "Small effusion.", "fixations": [2]}])  # fmt: skip
    assert "supports “Small effusion.”" in describe_fixation(grounded, 3)
    assert "supports" not in describe_fixation(grounded, 2)
    plain = Reading(image=grounded.image, scale=1.0, scanpath=scanpath)
    assert render_reading(grounded).height > render_reading(plain).height, "the legend lies below the image"
    # with the slider before the grounded fixation nothing is coloured yet, so there is no legend
    assert render_reading(grounded, fixations_shown=2).height == render_reading(plain, fixations_shown=2).height
