"""The watchdog against a fake camera made to stall: it restarts the camera, reloads the
network, re-applies the prompt and the headless demo keeps writing frames."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from picamera2_fake import FakeSensor, make_picamera2  # noqa: E402

from imx500_picosam.errors import PicosamError
from imx500_picosam.runtime import IMX500Backend, Session
from imx500_picosam.runtime.demo import run_headless
from imx500_picosam.runtime.watchdog import WatchdogSettings

BOXES = [(250, 150, 130, 110), (50, 300, 100, 100)]
MAIN = (640, 480)


def network(tensor):
    return tensor[..., 0].astype(np.float32) - 128


def camera(picosam_rpk, sensor, notes, **settings):
    picamera2 = make_picamera2(sensor)
    backend = IMX500Backend(picosam_rpk, picamera2=picamera2, main_size=MAIN, log=notes.append,
                            watchdog=WatchdogSettings(**settings))
    return backend, picamera2.log


def wrong_boxes(results, sensor, log):
    return sum(1 for r in results if r.mask is not None
               and sensor.rois[log.request_frames[r.frame]] != r.roi_sensor.as_xywh())


@pytest.mark.parametrize("fault, reason", [("stall", "no frame within 1.0 s"),
                                           ("error", "libcamera: Dequeue timer of 1000000.00us has expired!"),
                                           ("reload", "5 frames without an output tensor after the network had run")])
def test_a_stalled_stream_is_restarted_and_the_prompt_reapplied(picosam_rpk, scene, fault, reason):
    sensor = FakeSensor(scene, network, roi_latency=(0, 2), seed=1, faults={12: fault})
    notes = []
    backend, log = camera(picosam_rpk, sensor, notes, no_output_frames=5)
    with Session(backend, boxes=BOXES) as session:
        results = [session.step().result for _ in range(40)]
        kpis = session.kpis()
    assert log.starts == 2 and log.networks_loaded == 2  # the camera restarted, the network reloaded
    assert kpis["restarts"] == 1 and kpis["restart_log"][0]["reason"].startswith(reason)
    assert any(reason in note and "restarting the camera" in note for note in notes)
    # after the restart IMX500() sets the full sensor; the prompt's ROI is sent again at once
    full = (0, 0, 4056, 3040)
    restart_at = len(log.roi_calls) - 1 - log.roi_calls[::-1].index(full)
    assert log.roi_calls[restart_at + 1] in {r.roi_sensor.as_xywh() for r in results}
    # the run goes on, with masks in their own boxes on both sides of the restart
    assert [r.frame for r in results] == list(range(40))
    masked = [r.frame for r in results if r.mask is not None]
    assert max(masked) > 30 and min(masked) < 12
    assert wrong_boxes(results, sensor, log) == 0
    # the first wait covers the firmware upload, then N frame times at the RPK's rate
    assert log.waits[0] == WatchdogSettings().startup_s and log.waits[1] == pytest.approx(30 / 30)


def test_the_headless_demo_keeps_writing_across_restarts(picosam_rpk, scene, tmp_path):
    sensor = FakeSensor(scene, network, roi_latency=1, faults={8: "stall", 20: "error"})
    backend, log = camera(picosam_rpk, sensor, [])
    with Session(backend, boxes=BOXES) as session:
        written = run_headless(session, tmp_path / "out", 36, {"backend": "imx500"}, echo=lambda line: None)
    assert written == 36 and log.starts == 3
    lines = (tmp_path / "out" / "frames.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(36))
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["kpis"]["restarts"] == 2
    assert [entry["reason"].split()[0] for entry in info["kpis"]["restart_log"]] == ["no", "libcamera:"]


def test_a_camera_that_keeps_stalling_is_a_one_line_error(picosam_rpk, scene):
    sensor = FakeSensor(scene, network, faults={frame: "stall" for frame in range(3, 200)})
    backend, log = camera(picosam_rpk, sensor, [], max_restarts=3)
    with Session(backend, boxes=BOXES) as session:
        with pytest.raises(PicosamError, match=r"the camera stalled 4 times in a row .*picosam doctor"):
            for _ in range(20):
                session.step()
    assert log.starts == 4


def test_a_network_that_never_answers_counts_as_a_stall(picosam_rpk, scene):
    sensor = FakeSensor(scene, network, loading_frames=10_000)
    backend, log = camera(picosam_rpk, sensor, [], load_frames=6, max_restarts=1)
    with Session(backend, boxes=BOXES) as session:
        with pytest.raises(PicosamError, match="frames without an output tensor since the start"):
            for _ in range(20):
                session.step()
