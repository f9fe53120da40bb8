"""On-chip evaluation by tensor injection, against the fake of picamera2's injection API
(tests/fakes/picamera2_fake.py: EXR -> prepare_tensor_for_injection -> memfd -> comparison
frame), scored in the paper protocol next to an in-process method."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from picamera2_fake import FakeSensor, make_picamera2  # noqa: E402

from conftest import PHOTOS
from imx500_picosam.cli import main
from imx500_picosam.errors import PicosamError
from imx500_picosam.geometry import Roi, crop_to_model_input
from imx500_picosam.runtime import injection
from imx500_picosam.runtime.injection import OnCameraMethod, frames_past


def network(tensor_rgb):
    """A stand-in network whose logits depend on every channel and position of the input."""
    t = tensor_rgb.astype(np.float32)
    return (t[..., 0] - 0.5 * t[..., 1] - 0.25 * t[..., 2]) / 64.0 + np.linspace(-1, 1, 96)[None, :]


class InProcess:
    """The same network run on the host: what the chip must reproduce."""

    kind, name = "crop", "host"

    def predict_crops(self, crops):
        return np.stack([network(crop) for crop in crops]).astype(np.float32)


def crops(count=6):
    image = cv2.cvtColor(cv2.imread(str(PHOTOS / "chelsea.png")), cv2.COLOR_BGR2RGB)
    rois = [Roi(20 + 40 * i, 10 + 25 * i, 140 + 40 * i, 130 + 25 * i) for i in range(count)]
    return np.stack([crop_to_model_input(image, roi) for roi in rois])


def on_camera(picosam_rpk, **sensor_options):
    sensor = FakeSensor(np.zeros((30, 40, 3), np.uint8), network, **sensor_options)
    api = make_picamera2(sensor)
    return OnCameraMethod(picosam_rpk, api=api), sensor, api.log


def test_injected_crops_come_back_as_the_networks_logits(picosam_rpk):
    batch = crops()
    method, sensor, log = on_camera(picosam_rpk)
    with method:
        logits = method.predict_crops(batch)
    assert logits.shape == (6, 96, 96) and logits.dtype == np.float32
    # bit for bit what the network gives on the crop: planes, padding, int8 shift and order survived
    np.testing.assert_array_equal(logits, InProcess().predict_crops(batch))
    assert sensor.injections == 6 and len(log.injected_fds) == 6 and method.retried == 0
    assert log.config["controls"]["CnnEnableInputTensor"] is True and not log.started


@pytest.mark.parametrize("fault", ["drop", "late"])
def test_a_frame_count_mismatch_is_retried(picosam_rpk, fault):
    batch = crops(3)
    method, sensor, _ = on_camera(picosam_rpk, injection_faults={2: fault, 3: fault})
    with method:
        logits = method.predict_crops(batch)
    np.testing.assert_array_equal(logits, InProcess().predict_crops(batch))
    assert method.retried == 2 and sensor.injections == 5


def test_a_sensor_that_never_answers_is_a_one_line_error(picosam_rpk):
    method, _, _ = on_camera(picosam_rpk, injection_faults={n: "drop" for n in range(1, 20)})
    with method, pytest.raises(PicosamError, match=r"network.rpk: the sensor did not return the injected crop .* 5 tries"):
        method.predict_crops(crops(1))


def test_without_the_overlay_the_error_names_the_config_line(picosam_rpk):
    api = make_picamera2(FakeSensor(np.zeros((30, 40, 3), np.uint8), network), injection_overlay=False)
    with pytest.raises(PicosamError) as caught:
        OnCameraMethod(picosam_rpk, api=api)
    message = str(caught.value)
    assert "dtoverlay=imx500,cam0,bypass-cache" in message and "/boot/firmware/config.txt" in message
    assert "\n" not in message


def test_frame_counter_wraps_at_256():
    assert frames_past(3, 254) == 5 and frames_past(250, 2) == -8 and frames_past(7, 7) == 0


def test_evaluate_on_camera_scores_the_chip_in_the_paper_protocol(picosam_rpk, dev_set, tmp_path, monkeypatch):
    from imx500_picosam.learn.data import load_instances
    from imx500_picosam.learn.evaluate import evaluate_methods

    instances = load_instances(dev_set / "annotations.json", dev_set / "images", max_images=2)
    method, _, _ = on_camera(picosam_rpk)
    with method:
        report = evaluate_methods(instances, [method, InProcess()], [0.0], progress=False)
    chip, host = report["results"]["picosam-imx500"], report["results"]["host"]
    assert chip["0.00"]["crop"]["n"] == len(instances.instances) > 0
    assert chip["0.00"]["crop"]["miou"] == host["0.00"]["crop"]["miou"]  # the chip agrees with the host

    # the CLI: --on-camera --rpk, with the fake standing in for picamera2
    sensor = FakeSensor(np.zeros((30, 40, 3), np.uint8), network)
    monkeypatch.setattr(injection, "import_injection_api", lambda: make_picamera2(sensor))
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["evaluate", "--annotations", dev_set / "annotations.json", "--images",
                                       dev_set / "images", "--methods", "box", "--jitter", "0", "--max-images", "2",
                                       "--on-camera", "--rpk", picosam_rpk, "--out", out])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "picosam-imx500" in result.output and out.is_file()
    assert sensor.injections == len(instances.instances)
    lonely = CliRunner().invoke(main, ["evaluate", "--annotations", dev_set / "annotations.json", "--images",
                                       dev_set / "images", "--on-camera", "--out", out])
    assert lonely.exit_code == 1 and "--on-camera and --rpk network.rpk go together" in lonely.output
