"""`picosam segment` on a real photograph, through the CLI a script would call."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import PHOTOS
from imx500_picosam.model.checkpoint import initialise_checkpoint
from imx500_picosam.cli import main

PHOTO = PHOTOS / "chelsea.png"  # 451 x 300


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return initialise_checkpoint(tmp_path_factory.mktemp("seg") / "p3.weights.h5", seed=1).weights_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_mask_is_pasted_back_at_image_size(tmp_path, checkpoint):
    mask_path, logits_path = tmp_path / "mask.png", tmp_path / "logits.npy"
    result = run("segment", "--checkpoint", checkpoint, "--image", PHOTO, "--box", "140,40,170,170",
                 "--out", mask_path, "--logits", logits_path)
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(mask_path))
    assert mask.shape == (300, 451) and set(np.unique(mask)) <= {0, 255}
    logits = np.load(logits_path)
    assert logits.shape == (96, 96) and logits.dtype == np.float32
    # Everything outside the ROI (box padded 10 %, square, clipped) is background.
    assert not mask[:, :123].any() and not mask[:, 328:].any()
    # The pasted mask is the ROI-sized resize of the logits' sign.
    assert (mask > 0).sum() > 0 or (logits <= 0).all()
    assert "ROI x=123 y=23 w=204 h=204" in result.output


@pytest.mark.slow
def test_quantized_inference_follows_float(tmp_path, checkpoint):
    float_logits, quant_logits = tmp_path / "f.npy", tmp_path / "q.npy"
    for flag, path in (([], float_logits), (["--quantized"], quant_logits)):
        result = run("segment", "--checkpoint", checkpoint, "--image", PHOTO, "--box", "140,40,170,170",
                     "--out", tmp_path / "m.png", "--logits", path, *flag)
        assert result.exit_code == 0, result.output
    f, q = np.load(float_logits), np.load(quant_logits)
    assert not np.array_equal(f, q)  # really quantized
    assert np.corrcoef(f.ravel(), q.ravel())[0, 1] > 0.95


@pytest.mark.parametrize(
    "box, message",
    [("600,10,20,20", "chelsea.png: box (600.0, 10.0, 20.0, 20.0) lies outside the 451x300 frame"),
     ("10,10,0,20", "width and height must be positive"),
     ("1,2,3", "expected four numbers")],
)
def test_bad_boxes_are_one_line_errors(tmp_path, checkpoint, box, message):
    result = run("segment", "--checkpoint", checkpoint, "--image", PHOTO, "--box", box, "--out", tmp_path / "m.png")
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.png").exists()


def test_missing_checkpoint_is_one_line(tmp_path):
    result = run("segment", "--checkpoint", tmp_path / "none.weights.h5", "--image", PHOTO,
                 "--box", "1,1,5,5", "--out", tmp_path / "m.png")
    assert result.exit_code == 1 and "none.weights.h5: checkpoint weights file not found" in result.output


def test_without_checkpoint_the_shipped_model_segments(tmp_path):
    result = run("segment", "--image", PHOTO, "--box", "140,40,170,170", "--out", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    assert "UNTRAINED" not in result.output and (tmp_path / "m.png").is_file()
