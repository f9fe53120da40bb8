"""The camera's coordinate spaces and the two mappings the runtime needs.

A prompt box is drawn on the main stream (display pixels); the IMX500 wants its region of
interest in pixels of the full 4056x3040 sensor; the mask has to be drawn back on the main
stream. picamera2 describes the main stream by the ``ScalerCrop`` metadata (the part of the
sensor the ISP scales to the main stream, in full-sensor pixels) and the sizes of the raw
sensor mode and of the main stream::

    full sensor 4056x3040 ─┬─ ScalerCrop (x, y, w, h), the visible part ── ISP scale ──> main stream
                           └─ ROI (sensor px), set_inference_roi_abs ── stretched ──> 96x96 tensor

* display -> sensor (:func:`sensor_roi_for_box`): the box is scaled by ScalerCrop/main
  (floats), then :func:`imx500_picosam.geometry.roi_from_box` -- the one ROI rule of
  training and evaluation, the model's (``square`` or ``warp``) -- pads it, squares it or not, and clamps it to the visible part of the
  sensor, with a minimum side so the sensor is never asked for a sliver.
* sensor -> display (:func:`sensor_rect_to_main`): the arithmetic of picamera2's
  ``IMX500.get_roi_scaled`` (libcamera ``Rectangle.scaled_by`` / ``bounded_to`` /
  ``translated_by`` in integers, through the raw mode), so the runtime draws the ROI exactly
  where picamera2 would.

The emulator uses the same code with an identity geometry: its frame is the whole sensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

from ..geometry import MODEL_INPUT_SIZE, Roi, check_box, roi_from_box

IMX500_SENSOR_SIZE = (4056, 3040)  # the pixel array picamera2 treats as "full sensor"
# The smallest ROI side asked of the sensor: the input tensor's size, so the sensor never
# has to upsample (and a 1-pixel drag never becomes a 1-pixel ROI).
MIN_ROI_SENSOR_PIXELS = MODEL_INPUT_SIZE

Rect = Tuple[int, int, int, int]  # (x, y, width, height), libcamera's Rectangle


@dataclass(frozen=True)
class StreamGeometry:
    """Where the main stream's pixels come from on the sensor."""

    sensor_size: Tuple[int, int]  # (width, height) of the full pixel array
    scaler_crop: Rect  # sensor pixels shown by the main stream (picamera2 ``ScalerCrop``)
    raw_size: Tuple[int, int]  # the sensor mode's output size (camera_configuration()['raw'])
    main_size: Tuple[int, int]  # the main stream's size

    @classmethod
    def identity(cls, width: int, height: int) -> "StreamGeometry":
        """A frame that is the whole sensor, shown 1:1 (the emulator)."""
        return cls((width, height), (0, 0, width, height), (width, height), (width, height))

    def min_roi_side(self, sensor_pixels: int = MIN_ROI_SENSOR_PIXELS) -> int:
        """The minimum ROI side in this sensor's pixels: ``sensor_pixels`` of the IMX500's
        4056-pixel width, scaled to this sensor's width (the emulator's frame stands for the
        IMX500's whole field of view, so its minimum covers the same fraction of it)."""
        return max(1, math.ceil(sensor_pixels * self.sensor_size[0] / IMX500_SENSOR_SIZE[0]))


def box_to_sensor(box_xywh: Sequence[float], geometry: StreamGeometry) -> Tuple[float, float, float, float]:
    """A main-stream box in sensor pixels (floats; the exact inverse of the ISP's scaling)."""
    x, y, w, h = (float(v) for v in box_xywh)
    crop_x, crop_y, crop_w, crop_h = geometry.scaler_crop
    scale_x, scale_y = crop_w / geometry.main_size[0], crop_h / geometry.main_size[1]
    return crop_x + x * scale_x, crop_y + y * scale_y, w * scale_x, h * scale_y


def sensor_roi_for_box(box_xywh: Sequence[float], geometry: StreamGeometry, min_side: int, rule: str) -> Roi:
    """The sensor ROI for a prompt box given in main-stream pixels, by the model's ROI ``rule``.

    The box must be finite, have an area and overlap the main stream (one-line error
    otherwise). The ROI rule runs in sensor pixels, where a ``square`` ROI has to be square (the
    sensor stretches whatever it gets to 96x96, which is also what makes ``warp`` work), inside the visible part of the sensor
    (ScalerCrop): at its border the square is cut to a rectangle, which the sensor then
    stretches -- exactly what training saw at image borders.
    """
    main_w, main_h = geometry.main_size
    check_box(box_xywh, main_w, main_h)
    x, y, w, h = box_to_sensor(box_xywh, geometry)
    crop_x, crop_y, crop_w, crop_h = geometry.scaler_crop
    roi = roi_from_box((x - crop_x, y - crop_y, w, h), crop_w, crop_h, rule=rule, min_size=min_side)
    return Roi(roi.x0 + crop_x, roi.y0 + crop_y, roi.x1 + crop_x, roi.y1 + crop_y)


def full_view_box(geometry: StreamGeometry) -> Tuple[float, float, float, float]:
    """The prompt that stands for "the whole frame" (what ``r`` resets to)."""
    return (0.0, 0.0, float(geometry.main_size[0]), float(geometry.main_size[1]))


def sensor_rect_to_main(roi: Roi, geometry: StreamGeometry) -> Roi:
    """Where a sensor ROI appears on the main stream, as picamera2's ``get_roi_scaled``
    computes it: through the raw mode, bounded to the ScalerCrop, in integer arithmetic."""
    full = geometry.sensor_size
    raw = geometry.raw_size
    sensor_crop = _scaled(geometry.scaler_crop, raw, full)
    obj = _scaled(_bounded(roi.as_xywh(), (0, 0) + tuple(full)), raw, full)
    obj = _bounded(obj, sensor_crop)
    obj = (obj[0] - sensor_crop[0], obj[1] - sensor_crop[1], obj[2], obj[3])
    x, y, w, h = _scaled(obj, geometry.main_size, (sensor_crop[2], sensor_crop[3]))
    return Roi(x, y, x + w, y + h)


def _truncating_ratio(value: int, numerator: int, denominator: int) -> int:
    """``value * numerator / denominator`` as C++ integer division (towards zero)."""
    product = value * numerator
    quotient = abs(product) // denominator
    return quotient if product >= 0 else -quotient


def _scaled(rect: Sequence[int], numerator: Sequence[int], denominator: Sequence[int]) -> Rect:
    """libcamera ``Rectangle::scaledBy``."""
    x, y, w, h = rect
    return (
        _truncating_ratio(x, numerator[0], denominator[0]),
        _truncating_ratio(y, numerator[1], denominator[1]),
        _truncating_ratio(w, numerator[0], denominator[0]),
        _truncating_ratio(h, numerator[1], denominator[1]),
    )


def _bounded(rect: Sequence[int], bound: Sequence[int]) -> Rect:
    """libcamera ``Rectangle::boundedTo`` (the intersection; empty sides become 0)."""
    x0, y0 = max(rect[0], bound[0]), max(rect[1], bound[1])
    x1 = min(rect[0] + rect[2], bound[0] + bound[2])
    y1 = min(rect[1] + rect[3], bound[1] + bound[3])
    return (x0, y0, max(x1 - x0, 0), max(y1 - y0, 0))
