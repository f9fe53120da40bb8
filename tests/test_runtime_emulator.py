"""The emulator: the quantized PicoSAM3 on real photographs and a real video, through the Session."""

import json
import math

import cv2
import numpy as np
import pytest

from conftest import BLUE_DISK_RADIUS, PAN_STEP, PHOTOS, disk_centre_in_pan_frame
from imx500_picosam.calibration import load_crops
from imx500_picosam.errors import PicosamError
from imx500_picosam.model.runners import KerasEngine, TfliteEngine
from imx500_picosam.geometry import Roi, crop_to_model_input, paste_logits, roi_from_box
from imx500_picosam.runtime import EmulatorBackend, Session, open_source

PHOTO = PHOTOS / "chelsea.png"  # 451 x 300
BOX = (140, 40, 170, 170)


@pytest.fixture(scope="module")
def tflite_engine(quantized_picosam3):
    return TfliteEngine(quantized_picosam3.tflite)


@pytest.fixture(scope="module")
def keras_engine(quantized_picosam3):
    return KerasEngine(quantized_picosam3.keras)


class BlueNetwork:
    """A stand-in for the network (not for hardware) that segments saturated blue, so that
    following a moving object can be checked without a trained checkpoint."""

    name = "blue"

    def predict_crops(self, crops_uint8):
        rgb = crops_uint8.astype(np.float32) / 256.0
        return ((rgb[..., 2] - np.maximum(rgb[..., 0], rgb[..., 1])) * 10 - 3).astype(np.float32)


def test_quantized_picosam3_segments_a_real_photograph(tflite_engine):
    image_rgb = np.asarray(cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB))
    with Session(EmulatorBackend(open_source(str(PHOTO)), tflite_engine), boxes=[BOX]) as session:
        step = session.step()
    result = step.result
    assert step.image.shape == (300, 451, 3)
    # the ROI is the shared rule's, on the photo itself
    assert result.roi_sensor == result.roi_frame == roi_from_box(BOX, 451, 300, rule="square") == Roi(123, 23, 327, 227)
    # the network saw exactly the crop training and `picosam segment` feed it
    logits = tflite_engine.predict_crops(crop_to_model_input(image_rgb, result.roi_sensor)[None])[0]
    assert np.abs(logits).max() > 0
    reference = paste_logits(logits, result.roi_sensor, 300, 451)
    assert np.array_equal(result.full_mask() > 0, reference)
    assert result.mask_area == int(reference.sum())
    assert result.dnn_runtime_ms > 0 and result.host_latency_ms >= result.dnn_runtime_ms
    line = json.loads(json.dumps(result.to_json()))
    assert line["frame"] == 0 and line["prompt_id"] == 0 and line["prompt"] == list(BOX)
    assert line["roi_sensor"] == [123, 23, 204, 204] and line["roi_frame"] == [123, 23, 204, 204]
    assert line["dsp_runtime_ms"] is None


def test_int8_tflite_export_follows_mcts_quantized_model(tflite_engine, keras_engine):
    """Agreement on crops of the two held-out photographs (never used for calibration)."""
    crops = load_crops("held_out", rule="square").as_uint8()[::2]
    tflite = tflite_engine.predict_crops(crops)
    keras = keras_engine.predict_crops(crops)
    assert np.corrcoef(tflite.ravel(), keras.ravel())[0, 1] > 0.99
    assert ((tflite > 0) == (keras > 0)).mean() > 0.98


def test_several_boxes_take_turns_and_are_tagged(tflite_engine):
    boxes = [BOX, (20, 150, 100, 100)]
    with Session(EmulatorBackend(open_source(str(PHOTO)), tflite_engine), boxes=boxes) as session:
        results = [session.step().result for _ in range(4)]
        assert [r.prompt.id for r in results] == [0, 1, 0, 1]
        assert [r.frame for r in results] == [0, 1, 2, 3]
        assert [r.roi_sensor for r in results[:2]] == [roi_from_box(b, 451, 300, rule="square") for b in boxes]
        assert [r.prompt.id for r in session.latest_results()] == [0, 1]
        # a still photo gives the same answer each time
        assert np.array_equal(results[0].mask, results[2].mask)


def test_follow_tracks_an_object_through_a_real_video(panning_video):
    x, y = disk_centre_in_pan_frame(0)
    r = BLUE_DISK_RADIUS
    box = (x - r, y - r, 2 * r, 2 * r)
    for follow in (True, False):
        with Session(EmulatorBackend(open_source(str(panning_video)), BlueNetwork()), boxes=[box], follow=follow) as session:
            results = []
            while (step := session.step()) is not None:
                results.append(step.result)
        assert len(results) == 12  # the video's frames, then the end
        last = results[-1]
        centre = ((last.roi_frame.x0 + last.roi_frame.x1) / 2, (last.roi_frame.y0 + last.roi_frame.y1) / 2)
        truth = disk_centre_in_pan_frame(len(results) - 1)
        error = math.dist(centre, truth)
        if follow:
            # the ROI is centred on the previous frame's mask, so it lags one pan step ...
            assert error < PAN_STEP + 2, (centre, truth)
            # ... while the mask finds the whole disk where it is now
            ys, xs = np.nonzero(last.full_mask())
            assert math.dist((xs.mean(), ys.mean()), truth) < 2
            assert abs(last.mask_area - math.pi * r * r) < 0.15 * math.pi * r * r
        else:
            assert error > 50  # a fixed ROI loses it


def test_bad_prompts_are_refused_before_anything_changes(tflite_engine):
    backend = EmulatorBackend(open_source(str(PHOTO)), tflite_engine)
    with pytest.raises(PicosamError, match="width and height must be positive"):
        Session(backend, boxes=[(10, 10, 0, 20)]).start()
    with Session(EmulatorBackend(open_source(str(PHOTO)), tflite_engine), boxes=[BOX]) as session:
        for bad, message in [((500, 10, 20, 20), "lies outside the 451x300 frame"),
                             ((float("nan"), 1, 2, 3), "must be finite"),
                             ((-40, -40, 20, 20), "lies outside")]:
            with pytest.raises(PicosamError, match=message):
                session.set_boxes([BOX, bad])
        assert [p.box for p in session.prompts] == [BOX]
        session.reset()
        assert [p.box for p in session.prompts] == [(0.0, 0.0, 451.0, 300.0)]
        assert session.step().result.roi_sensor == Roi(0, 0, 451, 300)


def test_sources_explain_what_is_wrong(tmp_path):
    with pytest.raises(PicosamError, match="no such file"):
        open_source(str(tmp_path / "missing.jpg"))
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(PicosamError, match="notes.txt: cannot read it as an image or a video"):
        open_source(str(text))
    with pytest.raises(PicosamError, match="camera 9: cannot open it"):
        open_source("9")
