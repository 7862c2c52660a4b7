"""The processor: prompts, labels, padding, fixation normalisation and reduction, and its errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTImageProcessorPil

from modeling_gaze2report import Gaze2ReportProcessor, reduce_scanpath


def test_prompt_holds_one_placeholder_per_gaze_token(tiny_processor, xray):
    inputs = tiny_processor(images=[xray])
    assert (inputs["input_ids"] == tiny_processor.gaze_token_id).sum() == tiny_processor.num_gaze_tokens == 32
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    assert "labels" not in inputs and "fixations" not in inputs


def test_labels_cover_report_tokens_and_eos_only(tiny_processor, xray):
    reports = ["Small left effusion.", "No pneumothorax. The lungs are clear."]
    inputs = tiny_processor(images=[xray, xray], reports=reports)
    tokenizer = tiny_processor.tokenizer
    prompt_length = len(tiny_processor.prompt_ids)
    for i, report in enumerate(reports):
        labelled = inputs["labels"][i][inputs["labels"][i] != -100].tolist()
        assert labelled[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(labelled[:-1]).strip() == report
        assert (inputs["labels"][i, :prompt_length] == -100).all()
    # the shorter sequence is padded on the right, with attention mask 0 and label -100 there
    short = 0
    padding = inputs["attention_mask"][short] == 0
    assert padding.any() and (inputs["input_ids"][short][padding] == tokenizer.pad_token_id).all()
    assert (inputs["labels"][short][padding] == -100).all()
    assert inputs["attention_mask"][short].tolist() == sorted(inputs["attention_mask"][short].tolist(), reverse=True)


def test_max_report_tokens_cuts_and_keeps_eos(tiny_processor, xray):
    inputs = tiny_processor(
        images=[xray], reports=["No pneumothorax. The lungs are clear. Heart size is normal."], max_report_tokens=3
    )
    labelled = inputs["labels"][0][inputs["labels"][0] != -100].tolist()
    assert len(labelled) == 4 and labelled[-1] == tiny_processor.tokenizer.eos_token_id


def test_batch_decode_strips_padding_and_prompt(tiny_processor, xray):
    prompt = tiny_processor(images=[xray])["input_ids"][0].tolist()
    report_ids = tiny_processor.tokenizer.encode(" Small left effusion.", add_special_tokens=False)
    pad = tiny_processor.tokenizer.pad_token_id
    sequences = torch.tensor([[pad, pad] + prompt + report_ids, prompt + report_ids + [pad, pad]])
    assert tiny_processor.batch_decode(sequences) == ["Small left effusion.", "Small left effusion."]


def test_fixations_are_normalised_to_the_model_frame(tiny_processor, xray):
    height, width = xray.shape
    fixations = [[(0.0, 0.0, 0.2), (width / 2, height / 4, 0.4), {"x": width, "y": height, "duration": 1.0}]]
    inputs = tiny_processor(images=[xray], fixations=fixations)
    expected = torch.tensor([[0.0, 0.0, 0.2], [0.5, 0.25, 0.4], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(inputs["fixations"][0, :3], expected)
    assert inputs["fixation_mask"][0].tolist() == [True] * 3 + [False] * 13
    assert inputs["fixations"].shape == (1, 16, 3)


def test_centre_crop_geometry_and_the_way_back(tiny_processor, xray):
    crop_processor = Gaze2ReportProcessor(
        image_processor=ViTImageProcessorPil(
            size={"shortest_edge": 90}, do_center_crop=True, crop_size={"height": 90, "width": 90}
        ),
        tokenizer=tiny_processor.tokenizer,
    )
    # a 120 x 90 image: the crop keeps rows 15..105 of the original
    inputs = crop_processor(images=[xray], fixations=[[(45.0, 15.0, 0.3), (0.0, 60.0, 0.2), (45.0, 5.0, 0.1)]])
    torch.testing.assert_close(inputs["fixations"][0, :2], torch.tensor([[0.5, 0.0, 0.3], [0.0, 0.5, 0.2]]))
    assert inputs["fixation_mask"][0].sum() == 2, "the fixation above the crop is left out (with a warning)"
    back = crop_processor.post_process_scanpath(inputs["fixations"], inputs["fixation_mask"], [(90, 120)])[0]
    assert back == [
        pytest.approx({"x": 45.0, "y": 15.0, "duration": 0.3}, abs=1e-4),
        pytest.approx({"x": 0.0, "y": 60.0, "duration": 0.2}, abs=1e-4),
    ]


def test_post_process_scanpath_inverts_normalisation(tiny_processor, xray):
    fixations = [[(12.5, 100.0, 0.25), (80.0, 3.0, 1.5)]]
    inputs = tiny_processor(images=[xray], fixations=fixations)
    back = tiny_processor.post_process_scanpath(inputs["fixations"], inputs["fixation_mask"], [(90, 120)])[0]
    for (x, y, duration), point in zip(fixations[0], back):
        assert point == pytest.approx({"x": x, "y": y, "duration": duration}, rel=1e-5)


def test_reduce_scanpath_keeps_order_and_total_dwell():
    rng = np.random.default_rng(0)
    path = np.column_stack([rng.uniform(0, 1, 45), rng.uniform(0, 1, 45), rng.uniform(0.1, 1.5, 45)])
    reduced = reduce_scanpath(path, max_fixations=16, merge_radius=0.05)
    assert len(reduced) == 16
    assert reduced[:, 2].sum() == pytest.approx(path[:, 2].sum())
    assert np.array_equal(reduce_scanpath(path[:10], 16, 0.05), path[:10]), "short scanpaths are untouched"


def test_reduce_scanpath_merges_nearby_fixations_by_dwell_weight():
    path = np.array([[0.10, 0.10, 0.3], [0.12, 0.10, 0.1], [0.9, 0.9, 0.5], [0.5, 0.5, 0.2]])
    reduced = reduce_scanpath(path, max_fixations=3, merge_radius=0.05)
    np.testing.assert_allclose(reduced, [[0.105, 0.10, 0.4], [0.9, 0.9, 0.5], [0.5, 0.5, 0.2]])
    # still too long after the radius merge: the closest consecutive pair merges
    reduced = reduce_scanpath(path, max_fixations=2, merge_radius=0.05)
    np.testing.assert_allclose(
        reduced, [[0.105, 0.10, 0.4], [(0.9 * 0.5 + 0.5 * 0.2) / 0.7, (0.9 * 0.5 + 0.5 * 0.2) / 0.7, 0.7]]
    )


def test_long_scanpath_through_the_processor(tiny_processor, xray):
    rng = np.random.default_rng(1)
    fixations = [
        [
            (float(x), float(y), float(d))
            for x, y, d in zip(rng.uniform(0, 90, 50), rng.uniform(0, 120, 50), rng.uniform(0.1, 1.0, 50))
        ]
    ]
    inputs = tiny_processor(images=[xray], fixations=fixations)
    assert inputs["fixation_mask"].all()
    assert inputs["fixations"][0, :, 2].sum().item() == pytest.approx(sum(f[2] for f in fixations[0]), rel=1e-5)


@pytest.mark.parametrize(
    "fixation,message",
    [
        ((float("nan"), 3.0, 0.2), "NaN or infinity"),
        ((3.0, 3.0, -0.2), "negative duration"),
        ((95.0, 3.0, 0.2), r"lies outside its 90x120 image"),
        ((3.0, 3.0), "has 2 values"),
        ({"x": 3.0, "y": 1.0}, "lacks the key"),
        (("a", 1.0, 0.2), "not an \\(x, y, duration\\) triple"),
    ],
)
def test_bad_fixations_are_named(tiny_processor, xray, fixation, message):
    with pytest.raises(ValueError, match=message) as error:
        tiny_processor(images=[xray, xray], fixations=[None, [(1.0, 1.0, 0.1), fixation]])
    assert "fixations[1][1]" in str(error.value)


def test_batch_size_mismatches(tiny_processor, xray):
    with pytest.raises(ValueError, match="2 images but 1 reports"):
        tiny_processor(images=[xray, xray], reports=["No effusion."])
    with pytest.raises(ValueError, match="2 images but 3 fixation sequences"):
        tiny_processor(images=[xray, xray], fixations=[None, None, None])
    with pytest.raises(ValueError, match="needs images"):
        tiny_processor(reports=["No effusion."])


def test_images_of_every_kind(tiny_processor, tmp_path, xray):
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    rgb = np.stack([xray] * 3, axis=-1)
    sixteen_bit = xray.astype(np.uint16) * 256
    inputs = tiny_processor(images=[str(png), Image.fromarray(xray), rgb, sixteen_bit, xray.astype(np.float32) / 255])
    assert inputs["pixel_values"].shape == (5, 3, 64, 64)
    torch.testing.assert_close(inputs["pixel_values"][0], inputs["pixel_values"][1])
    torch.testing.assert_close(inputs["pixel_values"][0], inputs["pixel_values"][2])


def test_corrupt_image_file_is_named(tiny_processor, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        tiny_processor(images=[str(broken)])


def test_save_and_reload(tiny_processor, tmp_path, xray):
    custom = Gaze2ReportProcessor(
        image_processor=tiny_processor.image_processor,
        tokenizer=tiny_processor.tokenizer,
        instruction="Describe the chest X-ray.",
    )
    custom.save_pretrained(tmp_path)
    loaded = Gaze2ReportProcessor.from_pretrained(tmp_path)
    assert loaded.instruction == "Describe the chest X-ray."
    assert loaded.num_gaze_tokens == 32 and loaded.max_fixations == 16 and loaded.gaze_token_id == 3
    a = loaded(images=[xray], reports=["No effusion."], fixations=[[(3.0, 4.0, 0.5)]])
    assert "Describe the chest X-ray." in loaded.tokenizer.decode(a["input_ids"][0])
    assert (a["input_ids"] == 3).sum() == 32


def test_gaze_token_must_be_a_single_token(tiny_processor):
    with pytest.raises(ValueError, match="splits the gaze token"):
        Gaze2ReportProcessor(
            image_processor=tiny_processor.image_processor, tokenizer=tiny_processor.tokenizer, gaze_token="<look here>"
        )
