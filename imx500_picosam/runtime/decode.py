"""Output tensor -> 96x96 logits -> mask in the frame -> overlay, vectorised.

picamera2's ``IMX500.get_outputs`` turns the flat float32 ``CnnOutputTensor`` into arrays
with a Fortran-order reshape to the dimensions in ``CnnOutputTensorInfo``; for an
HxWxC network output that yields an array indexed ``[row, column, channel]``, so PicoSAM's
output arrives as a (96, 96, 1) array whose first axis is the image's y. Nothing here
transposes or flips it (tests/test_runtime_decode.py proves it with an asymmetric pattern
serialised the way the sensor serialises it).

The mask rule is :func:`imx500_picosam.geometry.paste_logits`' rule -- the logits resized
bilinearly to the ROI's size in the frame, then ``> 0`` -- but computed only inside the ROI:
the resized logits go into a float buffer that is allocated once and reused, so no
full-frame float image is allocated per frame, and the overlay touches only ROI pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import PicosamError
from ..geometry import MODEL_INPUT_SIZE, Roi

LOGITS_SHAPES = {(96, 96), (96, 96, 1), (1, 96, 96, 1)}


def logits_from_outputs(outputs: Optional[Sequence[np.ndarray]], source: str) -> Optional[np.ndarray]:
    """The 96x96 float32 logits (row = y) from picamera2's ``get_outputs`` list, or None
    when the frame carries no output tensor (e.g. while the firmware is still loading)."""
    if outputs is None or len(outputs) == 0:
        return None
    tensor = np.asarray(outputs[0])
    if tensor.shape not in LOGITS_SHAPES:
        raise PicosamError(
            f"{source}: the network's output tensor has shape {tuple(tensor.shape)}, "
            f"not PicoSAM's {MODEL_INPUT_SIZE}x{MODEL_INPUT_SIZE}x1: is this a PicoSAM network.rpk?"
        )
    # A logical reshape: numpy reads the array by index, whatever its memory order.
    return np.ascontiguousarray(tensor.reshape(MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), dtype=np.float32)


class MaskDecoder:
    """Decodes logits into a mask at the ROI's size in frame pixels.

    The float buffer for the resized logits grows to the largest ROI seen (at most the
    frame) and is reused; each decoded mask is a fresh uint8 array of the ROI's size
    (0 or 1) that the caller may keep.
    """

    def __init__(self) -> None:
        self._resized = np.empty(0, dtype=np.float32)

    def decode(self, logits: np.ndarray, roi_in_frame: Roi) -> np.ndarray:
        width, height = roi_in_frame.width, roi_in_frame.height
        if width <= 0 or height <= 0:
            return np.zeros((max(height, 0), max(width, 0)), dtype=np.uint8)
        if self._resized.size < width * height:
            self._resized = np.empty(width * height, dtype=np.float32)
        resized = self._resized[: width * height].reshape(height, width)
        cv2.resize(logits, (width, height), dst=resized, interpolation=cv2.INTER_LINEAR)
        return np.greater(resized, 0).view(np.uint8)


def mask_area(mask: np.ndarray) -> int:
    return int(cv2.countNonZero(mask)) if mask.size else 0


def mask_bounding_box(mask: np.ndarray, roi_in_frame: Roi) -> Optional[Tuple[int, int, int, int]]:
    """The mask's bounding box in frame pixels (x, y, w, h), or None for an empty mask."""
    if not mask.size or not cv2.countNonZero(mask):
        return None
    x, y, w, h = cv2.boundingRect(mask)
    return (x + roi_in_frame.x0, y + roi_in_frame.y0, w, h)


def paste_into(frame_mask: np.ndarray, mask: np.ndarray, roi_in_frame: Roi, value: int = 255) -> np.ndarray:
    """Write ``mask`` into a full-frame uint8 image (cleared first) as 0 / ``value``."""
    frame_mask.fill(0)
    region = frame_mask[roi_in_frame.y0 : roi_in_frame.y1, roi_in_frame.x0 : roi_in_frame.x1]
    np.multiply(mask, value, out=region, casting="unsafe")
    return frame_mask


@dataclass(frozen=True)
class OverlayStyle:
    colour: Tuple[int, int, int] = (0, 200, 255)  # BGR, for contour and ROI outline
    tint: Tuple[int, int, int] = (0, 90, 140)  # BGR added (saturating) to mask pixels
    contour_thickness: int = 2
    roi_thickness: int = 1


def draw_mask(image: np.ndarray, mask: np.ndarray, roi_in_frame: Roi, style: OverlayStyle = OverlayStyle()) -> None:
    """Tint the mask's pixels and outline its contour, in place, touching only the ROI."""
    if not mask.size:
        return
    view = image[roi_in_frame.y0 : roi_in_frame.y1, roi_in_frame.x0 : roi_in_frame.x1]
    cv2.add(view, style.tint + (0,), dst=view, mask=mask)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(view, contours, -1, style.colour, style.contour_thickness)


def draw_roi(image: np.ndarray, roi_in_frame: Roi, style: OverlayStyle = OverlayStyle()) -> None:
    cv2.rectangle(
        image, (roi_in_frame.x0, roi_in_frame.y0), (roi_in_frame.x1 - 1, roi_in_frame.y1 - 1),
        style.colour, style.roi_thickness,
    )
