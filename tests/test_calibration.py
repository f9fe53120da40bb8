import json

import numpy as np
import pytest

from imx500_picosam.calibration import DEFAULT_CALIBRATION_DIR, load_crops
from imx500_picosam.images import load_image_rgb
from imx500_picosam.errors import PicosamError


@pytest.fixture(scope="module")
def calibration():
    return load_crops("calibration", rule="square")


@pytest.fixture(scope="module")
def held_out():
    return load_crops("held_out", rule="square")


def test_at_least_64_crops_in_model_range(calibration):
    images = calibration.images
    assert images.shape[0] >= 64 and images.shape[1:] == (96, 96, 3)
    assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() < 1.0


def test_crops_are_deterministic(calibration):
    again = load_crops("calibration", rule="square")
    assert np.array_equal(again.images, calibration.images)
    assert again.sources == calibration.sources


def test_crops_are_photographs_not_noise(calibration):
    images = calibration.images
    # Natural images are smooth: neighbouring pixels correlate strongly; uniform noise does not.
    horizontal = np.corrcoef(images[:, :, :-1].ravel(), images[:, :, 1:].ravel())[0, 1]
    assert horizontal > 0.9
    noise = np.random.default_rng(0).random(images.shape, dtype=np.float32)
    assert abs(np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]) < 0.05
    # ... and distinct crops, not one image repeated.
    assert len({hash(im.tobytes()) for im in images}) == len(images)


def test_held_out_photos_are_disjoint(calibration, held_out):
    assert len(held_out.images) >= 32
    assert not {s for s, _ in calibration.sources} & {s for s, _ in held_out.sources}


def test_every_photo_is_licensed():
    manifest = json.loads((DEFAULT_CALIBRATION_DIR / "manifest.json").read_text())
    for photo in manifest["photos"]:
        assert photo["license"] and photo["source"]
        assert (DEFAULT_CALIBRATION_DIR / photo["file"]).is_file()


def test_unreadable_image_is_one_line(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(PicosamError, match="bad.jpg: cannot read image"):
        load_image_rgb(bad)
    with pytest.raises(PicosamError, match="nope.png: image file not found"):
        load_image_rgb(tmp_path / "nope.png")
