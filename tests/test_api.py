"""The Python API: the docs/api.md example runs as written; the package top stays light."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PHOTOS
from imx500_picosam.errors import PicosamError
from imx500_picosam.model.checkpoint import initialise_checkpoint

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
PHOTO = PHOTOS / "chelsea.png"  # 451 x 300


def python_blocks(markdown: Path):
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), flags=re.S)


def test_the_docs_example_runs_as_written():
    example = python_blocks(API_DOC)[0]
    done = subprocess.run([sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "(2, 300, 451) bool"
    assert lines[1] == "(2, 300, 451)"
    # TensorFlow's start-up lines are silenced.
    assert "oneDNN" not in done.stderr and "cuda" not in done.stderr.lower(), done.stderr


def test_importing_the_package_loads_no_tensorflow():
    code = ("import sys, imx500_picosam; assert callable(imx500_picosam.__getattr__); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'picamera2', 'torch', 'cv2')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    import imx500_picosam

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        imx500_picosam.nope  # noqa: B018
    assert {"load", "Predictor", "Result"} <= set(dir(imx500_picosam))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import imx500_picosam

    ckpt = initialise_checkpoint(tmp_path_factory.mktemp("api") / "p3.weights.h5", seed=1)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        return imx500_picosam.load(ckpt.weights_path)


def test_many_boxes_give_one_mask_each_at_image_size(model):
    from imx500_picosam.images import load_image_rgb

    boxes = [(140, 40, 170, 170), (135, 75, 75, 75)]
    result = model(PHOTO, boxes)
    assert result.masks.shape == (2, 300, 451) and result.masks.dtype == bool
    assert result.crop_logits.shape == (2, 96, 96)
    assert ((result.logits > 0) == result.masks).all()
    assert [roi.as_xywh() for roi in result.rois] == [(123, 23, 204, 204), (127, 67, 90, 90)]
    # Outside its ROI a box's mask is background and its logits -inf.
    assert not result.masks[1][:, :127].any() and np.isneginf(result.logits[1][:, :127]).all()
    # A path and an RGB array give the same answer; one box alone the same as in a batch.
    alone = model(load_image_rgb(PHOTO), boxes[1])
    np.testing.assert_array_equal(alone.masks[0], result.masks[1])
    np.testing.assert_allclose(alone.crop_logits[0], result.crop_logits[1], atol=1e-5)
    assert model.segment(PHOTO, boxes[0]).roi == result.rois[0]


def test_same_as_the_segment_command(model, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from imx500_picosam.cli import main

    logits = tmp_path / "l.npy"
    done = CliRunner().invoke(main, ["segment", "--checkpoint", str(model.checkpoint.weights_path), "--image",
                                     str(PHOTO), "--box", "135,75,75,75", "--out", str(tmp_path / "m.png"),
                                     "--logits", str(logits)])
    assert done.exit_code == 0, done.output
    result = model(PHOTO, (135, 75, 75, 75))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png")) > 0, result.masks[0])
    np.testing.assert_array_equal(np.load(logits), result.crop_logits[0])


@pytest.mark.parametrize("image, boxes, message", [
    (np.zeros((10, 10), np.uint8), (1, 1, 5, 5), r"expected an \(H, W, 3\) uint8 RGB array"),
    (PHOTO, (1, 2, 3), r"expected x,y,w,h"),
    (PHOTO, [], r"expected x,y,w,h"),
    (PHOTO, "abc", r"expected x,y,w,h"),
    (PHOTO, (600, 10, 20, 20), r"chelsea.png: box .* lies outside the 451x300 frame"),
    (Path("nope.png"), (1, 1, 5, 5), r"nope.png: image file not found"),
])
def test_bad_input_is_a_one_line_error(model, image, boxes, message):
    with pytest.raises(PicosamError, match=message):
        model(image, boxes)


def test_an_unknown_kind_is_refused_before_loading():
    import imx500_picosam

    with pytest.raises(PicosamError, match="kind 'int4' is not one of float, quantized, int8"):
        imx500_picosam.load(kind="int4")
