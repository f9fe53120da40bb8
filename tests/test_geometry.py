import math

import numpy as np
import pytest

from imx500_picosam.errors import PicosamError
from imx500_picosam.geometry import (
    Roi,
    crop_mask_to_model_input,
    crop_to_model_input,
    parse_box,
    paste_logits,
    roi_from_box,
    to_model_range,
)


def authors_rule(bbox, img_width, img_height, padding=0.1):
    """The published rule, restated independently: pad, square around the centre, clip, int()."""
    x, y, w, h = bbox
    x, y, w, h = x - w * padding, y - h * padding, w * (1 + 2 * padding), h * (1 + 2 * padding)
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2
    corners = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    x1, y1 = max(0, corners[0]), max(0, corners[1])
    x2, y2 = min(img_width, corners[2]), min(img_height, corners[3])
    return int(x1), int(y1), int(x2), int(y2)


def test_centre_box_becomes_padded_square():
    roi = roi_from_box((100, 100, 50, 20), 640, 480, rule="square")
    # padded 60 x 24 around (125, 110); square of side 60
    assert (roi.x0, roi.y0, roi.x1, roi.y1) == (95, 80, 155, 140)
    assert roi.width == roi.height == 60


def test_matches_authors_rule_on_many_random_boxes():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        width, height = int(rng.integers(50, 4057)), int(rng.integers(50, 3041))
        w, h = rng.uniform(1, width), rng.uniform(1, height)
        box = (rng.uniform(0, width - w), rng.uniform(0, height - h), w, h)
        roi = roi_from_box(box, width, height, rule="square")
        assert (roi.x0, roi.y0, roi.x1, roi.y1) == authors_rule(box, width, height)


def test_border_box_is_clipped_to_a_rectangle():
    roi = roi_from_box((0, 0, 100, 100), 640, 480, rule="square")
    assert (roi.x0, roi.y0) == (0, 0)
    assert roi.width == roi.height == 110  # the square reached past the corner and was cut
    roi = roi_from_box((600, 100, 40, 300), 640, 480, rule="square")
    assert roi.x1 == 640 and roi.width < roi.height  # stretched rectangle at the right border


@pytest.mark.parametrize(
    "box, message",
    [
        ((10, 10, 0, 5), "width and height must be positive"),
        ((10, 10, -3, 5), "width and height must be positive"),
        ((math.nan, 10, 5, 5), "finite"),
        ((10, math.inf, 5, 5), "finite"),
        ((700, 10, 5, 5), "outside the 640x480 frame"),
        ((-50, 10, 20, 5), "outside the 640x480 frame"),
    ],
)
def test_bad_boxes_give_one_line_errors(box, message):
    with pytest.raises(PicosamError) as err:
        roi_from_box(box, 640, 480, rule="square")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_min_size_widens_inside_the_frame():
    roi = roi_from_box((639.5, 10, 0.2, 0.2), 640, 480, min_size=16, rule="square")
    assert roi.width == 16 and roi.height == 16 and roi.x1 == 640


def test_parse_box():
    assert parse_box("1,2.5, 3,4") == (1.0, 2.5, 3.0, 4.0)
    for bad in ("1,2,3", "a,b,c,d", ""):
        with pytest.raises(PicosamError):
            parse_box(bad)


def test_crop_stretches_roi_and_keeps_orientation():
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, :150, 0] = 255  # left half red
    image[:100, :, 2] = 255  # top half blue
    crop = crop_to_model_input(image, Roi(50, 0, 250, 200))
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    assert crop[48, 10, 0] == 255 and crop[48, 85, 0] == 0
    assert crop[10, 48, 2] == 255 and crop[85, 48, 2] == 0


def test_mask_crop_is_nearest_and_binary():
    mask = np.zeros((100, 100), bool)
    mask[20:60, 30:70] = True
    crop = crop_mask_to_model_input(mask, Roi(0, 0, 100, 100))
    assert crop.dtype == bool and set(np.unique(crop)) == {False, True}


def test_model_range_is_sensor_scale():
    values = to_model_range(np.array([0, 128, 255], np.uint8))
    assert values.dtype == np.float32
    assert values.tolist() == [0.0, 0.5, 255 / 256]


def test_paste_logits_places_mask_in_roi_only():
    logits = -np.ones((96, 96), np.float32)
    logits[:, :48] = 1.0  # left half of the crop is object
    mask = paste_logits(logits, Roi(100, 50, 196, 146), 300, 400)
    assert mask.shape == (300, 400)
    assert mask[60:140, 100:140].all()
    assert not mask[60:140, 160:196].any()
    assert not mask[:50].any() and not mask[:, :100].any() and not mask[:, 196:].any()
