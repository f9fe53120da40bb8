"""IMX500Backend against a faithful fake of picamera2 and the sensor (tests/fakes/picamera2_fake.py).

The real ROI, tensor and decode code runs; only what happens inside the camera is simulated.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from picamera2_fake import FakeSensor, fake_roi_scaled, make_picamera2  # noqa: E402

from conftest import RPK_FIXTURES
from imx500_picosam.errors import PicosamError, RpkError
from imx500_picosam.geometry import Roi, paste_logits, roi_from_box
from imx500_picosam.model.runners import TfliteEngine
from imx500_picosam.runtime import IMX500Backend, Session
from imx500_picosam.runtime.coords import box_to_sensor, StreamGeometry
from test_runtime_decode import asymmetric_logits

BOX = (500, 300, 260, 220)  # main-stream pixels of the 1280x960 stream


def sensor_frame(result) -> int:
    """The sensor's frame number of a result: start() read one frame's metadata (ScalerCrop)."""
    return result.frame + 1


def pattern_network(_tensor_input):
    return asymmetric_logits()


def camera(rpk, sensor, **options):
    picamera2 = make_picamera2(sensor)
    return IMX500Backend(rpk, picamera2=picamera2, log=lambda line: None, **options), picamera2.log


def steps_until_mask(session, limit=10):
    for _ in range(limit):
        step = session.step()
        if step.result.mask is not None:
            return step
    raise AssertionError("no mask within the frame limit")


def test_start_uses_picamera2_as_documented(picosam_rpk, scene):
    sensor = FakeSensor(scene, pattern_network)
    backend, log = camera(picosam_rpk, sensor)
    with Session(backend, boxes=[BOX]) as session:
        assert log.started and log.progress_bar_shown
        assert log.config["main"] == {"size": (1280, 960), "format": "RGB888"}
        assert log.config["controls"] == {"FrameRate": 30, "CnnEnableInputTensor": True} and log.config["buffer_count"] == 12
        session.step()
        # IMX500() starts on the full sensor; then the prompt's ROI, in full-sensor pixels
        assert log.roi_calls[0] == (0, 0, 4056, 3040)
        expected = roi_from_box(box_to_sensor(BOX, session.geometry), 4056, 3040, min_size=96, rule="square")
        assert log.roi_calls[1] == expected.as_xywh()
        for _ in range(3):
            session.step()
        assert len(log.roi_calls) == 2  # an unchanged prompt is not sent again
    assert log.closed and not log.started


def test_asymmetric_pattern_lands_unrotated_in_the_frame(picosam_rpk, scene):
    sensor = FakeSensor(scene, pattern_network)
    backend, _ = camera(picosam_rpk, sensor)
    with Session(backend, boxes=[BOX]) as session:
        result = steps_until_mask(session).result
    # independently: picamera2's get_roi_scaled for the ROI, and the paste rule there
    drawn = fake_roi_scaled(result.roi_sensor.as_xywh(), sensor.scaler_crop, sensor.raw_size, (1280, 960))
    assert result.roi_frame.as_xywh() == drawn
    x, y, w, h = drawn
    expected = paste_logits(asymmetric_logits(), Roi(x, y, x + w, y + h), 960, 1280)
    assert np.array_equal(result.full_mask() > 0, expected)
    # the stem of the Γ is on the left and the bar on top, in frame coordinates
    ys, xs = np.nonzero(expected)
    assert xs.min() < x + w * 0.25 and ys.min() < y + h * 0.2 and (xs.max() - xs.min()) > 0.6 * w


@pytest.mark.parametrize("settle, roi_latency", [(2, 2), (3, 1)])
def test_without_input_tensor_results_belong_to_the_roi_the_sensor_used(picosam_rpk, scene, settle, roi_latency):
    """The fallback for an RPK without input persistency (tests/test_runtime_attribution.py
    covers the frame-exact attribution with the input tensor)."""
    sensor = FakeSensor(scene, lambda tensor: tensor[..., 0].astype(np.float32) - 128, roi_latency=roi_latency,
                        input_persistency=False)
    backend, _ = camera(picosam_rpk, sensor, settle_frames=settle)
    boxes = [BOX, (100, 600, 200, 200), (900, 100, 300, 150)]
    with Session(backend, boxes=boxes) as session:
        results = [session.step().result for _ in range(30)]
    with_mask = [r for r in results if r.mask is not None]
    assert {r.prompt.id for r in with_mask} == {0, 1, 2}
    for result in with_mask:
        # the ROI recorded by the sensor for the frame is the prompt's
        assert sensor.rois[sensor_frame(result)] == result.roi_sensor.as_xywh()
    assert len(with_mask) == 30 // (settle + 1)


def test_too_few_settle_frames_would_mislabel_results(picosam_rpk, scene):
    """The check above can fail: with the ROI lagging two frames and no settling, a result
    is attributed to the new prompt while the sensor still looked at the old ROI."""
    sensor = FakeSensor(scene, pattern_network, roi_latency=2, input_persistency=False)
    backend, _ = camera(picosam_rpk, sensor, settle_frames=0)
    with Session(backend, boxes=[BOX, (100, 600, 200, 200)]) as session:
        results = [session.step().result for _ in range(6)]
    assert any(sensor.rois[sensor_frame(r)] != r.roi_sensor.as_xywh() for r in results if r.mask is not None)


def test_kpi_and_firmware_loading_frames(picosam_rpk, scene):
    sensor = FakeSensor(scene, pattern_network, loading_frames=4)
    backend, _ = camera(picosam_rpk, sensor, settle_frames=0)
    with Session(backend, boxes=[BOX]) as session:
        results = [session.step().result for _ in range(6)]
    assert [r.mask is None for r in results] == [True] * 3 + [False] * 3  # capture_metadata took frame 0
    assert results[0].dnn_runtime_ms is None
    assert results[-1].dnn_runtime_ms == pytest.approx(8.7) and results[-1].dsp_runtime_ms == pytest.approx(1.1)
    line = results[-1].to_json()
    assert line["dnn_runtime_ms"] == 8.7 and line["mask_area"] == int(results[-1].mask.sum())


def test_real_quantized_picosam3_on_the_sensor(picosam_rpk, scene, quantized_picosam3):
    """The real network in the fake sensor: its logits reach the mask bit for bit."""
    engine = TfliteEngine(quantized_picosam3.tflite)
    sensor = FakeSensor(scene, lambda tensor: engine.predict_crops(tensor[None])[0])
    backend, _ = camera(picosam_rpk, sensor)
    with Session(backend, boxes=[BOX]) as session:
        result = steps_until_mask(session).result
    logits = sensor.outputs[sensor_frame(result)]
    assert np.abs(logits).max() > 0
    expected = paste_logits(logits, result.roi_frame, 960, 1280)
    assert np.array_equal(result.full_mask() > 0, expected)


def test_a_16_9_stream_shows_a_band_of_the_sensor(picosam_rpk, scene):
    sensor = FakeSensor(scene, pattern_network, scaler_crop=(0, 440, 4056, 2160))
    backend, _ = camera(picosam_rpk, sensor, main_size=(1280, 720))
    with Session(backend, boxes=[(600, 0, 100, 80)]) as session:
        assert session.geometry == StreamGeometry((4056, 3040), (0, 440, 4056, 2160), (2028, 1520), (1280, 720))
        result = steps_until_mask(session).result
    assert result.roi_sensor.y0 == 440  # clamped to the visible band, not the sensor's top
    assert result.roi_frame.y0 == 0 and result.full_mask().shape == (720, 1280)


def test_a_network_that_is_not_picosam_is_refused(tmp_path):
    deeplab = RPK_FIXTURES / "imx500_network_deeplabv3plus.rpk"
    if not deeplab.is_file():
        pytest.skip("vendor RPK fixtures not found")
    with pytest.raises(PicosamError, match="takes a 320x320 input, not PicoSAM's 96x96"):
        IMX500Backend(deeplab, picamera2=make_picamera2(None))
    with pytest.raises(RpkError, match="missing.rpk"):
        IMX500Backend(tmp_path / "missing.rpk", picamera2=make_picamera2(None))


def test_a_foreign_output_tensor_is_a_one_line_error(picosam_rpk, scene):
    sensor = FakeSensor(scene, pattern_network)
    sensor.network = lambda tensor: np.zeros((96, 96), np.float32)
    backend, _ = camera(picosam_rpk, sensor, settle_frames=0)
    original = sensor.next_frame

    def deeplab_like_frame(main_size):
        main, metadata = original(main_size)
        if "CnnOutputTensor" in metadata:
            from picamera2_fake import serialise_like_the_sensor, tensor_info_bytes

            metadata["CnnOutputTensor"] = serialise_like_the_sensor(np.zeros((21, 16, 16), np.float32))
            metadata["CnnOutputTensorInfo"] = tensor_info_bytes("deeplab", [(21, 16, 16)])
        return main, metadata

    sensor.next_frame = deeplab_like_frame
    with Session(backend, boxes=[BOX]) as session:
        with pytest.raises(PicosamError, match=r"network.rpk: the network's output tensor has shape \(21, 16, 16\)"):
            session.step()


def test_no_camera_and_no_picamera2_are_one_line_errors(picosam_rpk, scene):
    backend = IMX500Backend(picosam_rpk, picamera2=make_picamera2(FakeSensor(scene, pattern_network), camera_present=False))
    with pytest.raises(PicosamError, match="the IMX500 refused it: IMX500: Requested camera dev-node not found"):
        Session(backend, boxes=[BOX]).start()
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(PicosamError, match="picamera2 is not available.*use --emulate"):
            IMX500Backend(picosam_rpk)


def test_the_package_imports_without_picamera2():
    import subprocess

    code = ("import sys, imx500_picosam.runtime, imx500_picosam.cli; "
            "assert 'picamera2' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
