"""Main stream <-> sensor coordinates: the ROI rule on the sensor and picamera2's inverse."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from picamera2_fake import fake_roi_scaled  # noqa: E402

from imx500_picosam.errors import PicosamError
from imx500_picosam.geometry import Roi, roi_from_box
from imx500_picosam.runtime.coords import (
    IMX500_SENSOR_SIZE,
    MIN_ROI_SENSOR_PIXELS,
    StreamGeometry,
    box_to_sensor,
    sensor_rect_to_main,
    sensor_roi_for_box,
)

FULL = StreamGeometry(IMX500_SENSOR_SIZE, (0, 0, 4056, 3040), (2028, 1520), (1280, 960))
# A 16:9 main stream: the ISP shows a centred band of the sensor.
WIDE = StreamGeometry(IMX500_SENSOR_SIZE, (0, 440, 4056, 2160), (2028, 1520), (1280, 720))


def test_emulator_geometry_is_exactly_the_shared_roi_rule():
    rng = np.random.default_rng(3)
    for _ in range(500):
        width, height = int(rng.integers(200, 2000)), int(rng.integers(200, 2000))
        geometry = StreamGeometry.identity(width, height)
        w, h = rng.uniform(20, width), rng.uniform(20, height)
        box = (rng.uniform(-w / 2, width - w / 2), rng.uniform(-h / 2, height - h / 2), w, h)
        expected = roi_from_box(box, width, height, min_size=geometry.min_roi_side(), rule="square")
        assert sensor_roi_for_box(box, geometry, geometry.min_roi_side(), "square") == expected


def test_display_box_becomes_a_padded_square_in_sensor_pixels():
    box = (400, 300, 200, 100)  # display pixels of a 1280x960 stream showing the whole sensor
    roi = sensor_roi_for_box(box, FULL, MIN_ROI_SENSOR_PIXELS, "square")
    scale = 4056 / 1280
    assert box_to_sensor(box, FULL) == pytest.approx((400 * scale, 300 * 3040 / 960, 200 * scale, 100 * 3040 / 960))
    assert roi == roi_from_box(box_to_sensor(box, FULL), 4056, 3040, rule="square")
    # padded longer side 240 display px = 760.5 sensor px; square up to int() truncation
    assert abs(roi.width - roi.height) <= 1 and abs(roi.width - 240 * scale) <= 1
    centre = ((roi.x0 + roi.x1) / 2 / scale, (roi.y0 + roi.y1) / 2 * 960 / 3040)
    assert centre == pytest.approx((500, 350), abs=1)


def test_roi_drawn_back_on_the_main_stream_is_the_padded_box():
    roi = sensor_roi_for_box((400, 300, 200, 100), FULL, MIN_ROI_SENSOR_PIXELS, "square")
    drawn = sensor_rect_to_main(roi, FULL)
    expected = roi_from_box((400, 300, 200, 100), 1280, 960, rule="square")  # the rule applied in display pixels
    assert max(abs(a - b) for a, b in zip(drawn.as_xywh(), expected.as_xywh())) <= 2


@pytest.mark.parametrize("geometry", [FULL, WIDE, StreamGeometry(IMX500_SENSOR_SIZE, (1014, 760, 2028, 1520), (2028, 1520), (640, 480)),
                                      StreamGeometry(IMX500_SENSOR_SIZE, (0, 0, 4056, 3040), (4056, 3040), (1333, 999))])
def test_inverse_mapping_is_picamera2_get_roi_scaled(geometry):
    rng = np.random.default_rng(11)
    for _ in range(1000):
        x, y = int(rng.integers(-200, 4056)), int(rng.integers(-200, 3040))
        roi = Roi(x, y, x + int(rng.integers(1, 4056)), y + int(rng.integers(1, 3040)))
        expected = fake_roi_scaled(roi.as_xywh(), geometry.scaler_crop, geometry.raw_size, geometry.main_size)
        assert sensor_rect_to_main(roi, geometry).as_xywh() == expected


def test_sensor_border_clips_the_square_to_a_stretched_rectangle():
    roi = sensor_roi_for_box((0, 0, 100, 100), FULL, MIN_ROI_SENSOR_PIXELS, "square")
    assert (roi.x0, roi.y0) == (0, 0) and roi.width < 110 * 4056 / 1280 + 1
    # only the visible band of the sensor is used: a box at the top of a 16:9 stream
    # gets an ROI that starts where the stream starts, not above it
    roi = sensor_roi_for_box((600, 0, 80, 60), WIDE, MIN_ROI_SENSOR_PIXELS, "square")
    assert roi.y0 == 440 and roi.height < roi.width
    drawn = sensor_rect_to_main(roi, WIDE)
    assert drawn.y0 == 0 and drawn.height > 0


def test_tiny_box_gets_the_minimum_roi():
    roi = sensor_roi_for_box((640, 480, 1, 1), FULL, MIN_ROI_SENSOR_PIXELS, "square")
    assert roi.width == roi.height == MIN_ROI_SENSOR_PIXELS == 96
    # the emulator's frame stands for the whole field of view: same fraction of it
    assert StreamGeometry.identity(1280, 960).min_roi_side() == math.ceil(96 * 1280 / 4056) == 31
    assert StreamGeometry.identity(4056, 3040).min_roi_side() == 96


@pytest.mark.parametrize(
    "box, message",
    [((10, 10, 0, 20), "width and height must be positive"),
     ((10, 10, 20, -1), "width and height must be positive"),
     ((1300, 10, 20, 20), "lies outside the 1280x960 frame"),
     ((-30, 10, 20, 20), "lies outside the 1280x960 frame"),
     ((math.nan, 10, 20, 20), "must be finite"),
     ((10, 10, math.inf, 20), "must be finite")],
)
def test_bad_prompts_are_one_line_errors_in_display_pixels(box, message):
    with pytest.raises(PicosamError) as err:
        sensor_roi_for_box(box, FULL, MIN_ROI_SENSOR_PIXELS, "square")
    assert message in str(err.value) and "\n" not in str(err.value)
