"""Output tensor -> logits -> mask -> overlay: orientation, the paste rule, no full-frame floats."""

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from picamera2_fake import get_outputs, serialise_like_the_sensor, tensor_info_bytes  # noqa: E402

from imx500_picosam.errors import PicosamError
from imx500_picosam.geometry import Roi, paste_logits
from imx500_picosam.runtime.decode import MaskDecoder, draw_mask, logits_from_outputs, mask_bounding_box


def asymmetric_logits() -> np.ndarray:
    """A 'Γ' plus a dot: differs from its transpose and from every flip."""
    logits = np.full((96, 96), -4.0, dtype=np.float32)
    logits[8:80, 10:22] = 4.0  # the stem, on the left, tall
    logits[8:18, 10:70] = 4.0  # the bar, along the top, long
    logits[70:76, 80:86] = 4.0  # a dot near the bottom right
    logits += np.arange(96, dtype=np.float32)[None, :] * 1e-3  # every column distinct too
    return logits


def metadata_for(logits: np.ndarray) -> dict:
    return {"CnnOutputTensor": serialise_like_the_sensor(logits[:, :, None]),
            "CnnOutputTensorInfo": tensor_info_bytes("picosam3", [(96, 96, 1)])}


def test_fortran_order_output_keeps_rows_rows_and_columns_columns():
    logits = asymmetric_logits()
    assert not np.array_equal(logits, logits.T)
    assert not np.array_equal(logits, logits[::-1]) and not np.array_equal(logits, logits[:, ::-1])
    flat = np.asarray(metadata_for(logits)["CnnOutputTensor"], dtype=np.float32)
    # the sensor's order is not numpy's: read in C order it comes out transposed
    assert np.array_equal(flat.reshape(96, 96), logits.T)
    outputs = get_outputs(metadata_for(logits))  # picamera2's reading of the metadata
    assert outputs[0].shape == (96, 96, 1)
    decoded = logits_from_outputs(outputs, "network.rpk")
    assert decoded.shape == (96, 96) and decoded.dtype == np.float32 and decoded.flags.c_contiguous
    assert np.array_equal(decoded, logits)
    # and the mask lands the right way round in the frame: stem left, bar on top, dot bottom right
    roi = Roi(200, 100, 392, 292)  # 192 x 192: 2x the tensor
    mask = MaskDecoder().decode(decoded, roi)
    assert mask[20:150, 22:40].all() and not mask[40:150, 50:130].any()  # stem, nothing right of it
    assert mask[18:30, 22:135].all()  # bar
    assert mask[142:150, 162:170].all() and mask_bounding_box(mask, roi) == (220, 116, 152, 144)


@pytest.mark.parametrize("shape", [(96, 96, 1), (96, 96), (1, 96, 96, 1)])
def test_accepted_output_shapes(shape):
    logits = asymmetric_logits()
    assert np.array_equal(logits_from_outputs([logits.reshape(shape)], "n.rpk"), logits)


def test_missing_tensor_is_none_and_a_foreign_network_is_a_one_line_error():
    assert logits_from_outputs(None, "n.rpk") is None and logits_from_outputs([], "n.rpk") is None
    with pytest.raises(PicosamError) as err:
        logits_from_outputs([np.zeros((21, 320, 320), np.float32)], "deeplab.rpk")
    assert str(err.value).startswith("deeplab.rpk: the network's output tensor has shape (21, 320, 320)")


def test_decoded_mask_is_the_paste_rule_inside_the_roi():
    rng = np.random.default_rng(5)
    decoder = MaskDecoder()
    for _ in range(30):
        logits = rng.normal(size=(96, 96)).astype(np.float32)
        x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 400))
        roi = Roi(x0, y0, x0 + int(rng.integers(10, 680)), y0 + int(rng.integers(10, 560)))
        mask = decoder.decode(logits, roi)
        assert mask.dtype == np.uint8 and mask.shape == (roi.height, roi.width)
        reference = paste_logits(logits, roi, 960, 1280)
        assert np.array_equal(mask.astype(bool), reference[roi.y0 : roi.y1, roi.x0 : roi.x1])


def test_no_full_frame_float_buffer_is_allocated_per_frame():
    decoder, logits = MaskDecoder(), np.random.default_rng(0).normal(size=(96, 96)).astype(np.float32)
    full_frame = Roi(0, 0, 1280, 960)
    decoder.decode(logits, full_frame)  # the buffer is made once
    image = np.zeros((960, 1280, 3), np.uint8)
    tracemalloc.start()
    for _ in range(3):
        mask = decoder.decode(logits, full_frame)
        draw_mask(image, mask, full_frame)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # only the uint8 masks are new (1.2 MB each, the previous one still alive while the next is
    # made); a float32 frame would be 4.9 MB on its own
    assert peak < 1280 * 960 * 4


def test_overlay_touches_only_the_roi_and_outlines_the_mask():
    image = np.full((480, 640, 3), 50, np.uint8)
    roi = Roi(100, 80, 292, 272)
    mask = MaskDecoder().decode(asymmetric_logits(), roi)
    before = image.copy()
    draw_mask(image, mask, roi)
    changed = np.any(image != before, axis=2)
    assert changed[roi.y0 : roi.y1, roi.x0 : roi.x1].sum() > 0
    changed[roi.y0 : roi.y1, roi.x0 : roi.x1] = False
    assert not changed.any()
    inside = image[roi.y0 : roi.y1, roi.x0 : roi.x1]
    assert (inside[mask.astype(bool)] != 50).any(axis=1).all()  # every mask pixel tinted or outlined
    assert (inside[~mask.astype(bool)] == 50).mean() > 0.9  # the rest untouched but for the contour
