"""`picosam demo` through the CLI: headless output on a real photo and video, and its one-line errors."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import PHOTOS
from imx500_picosam.cli import main
from imx500_picosam.runtime import backends

PHOTO = PHOTOS / "chelsea.png"  # 451 x 300


def run(*args, env=None):
    return CliRunner().invoke(main, ["demo", *[str(a) for a in args]], env=env)


def read_lines(folder):
    return [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]


def test_headless_demo_on_a_photo_writes_masks_and_json_lines(tmp_path, quantized_picosam3):
    out = tmp_path / "out"
    result = run("--emulate", "--source", PHOTO, "--checkpoint", quantized_picosam3.checkpoint.weights_path,
                 "--headless", "--box", "140,40,170,170", "--box", "20,150,100,100", "--frames", 3, "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "UNTRAINED MODEL" in result.stderr and "cached INT8 export" in result.stderr
    lines = read_lines(out)
    assert [(line["frame"], line["prompt_id"]) for line in lines] == [(0, 0), (1, 1), (2, 0)]
    first = lines[0]
    assert set(first) == {"frame", "prompt_id", "prompt", "roi_sensor", "roi_frame", "mask_area",
                          "host_latency_ms", "dnn_runtime_ms", "dsp_runtime_ms", "attribution", "track", "mask"}
    assert first["attribution"] == "reported"  # the emulator without latency knows its ROI
    assert first["prompt"] == [140, 40, 170, 170] and first["roi_frame"] == [123, 23, 204, 204]
    assert first["host_latency_ms"] > 0 and first["dnn_runtime_ms"] > 0
    for line in lines:
        mask = cv2.imread(str(out / line["mask"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (300, 451) and set(np.unique(mask)) <= {0, 255}
        assert int((mask > 0).sum()) == line["mask_area"]
        x, y, w, h = line["roi_frame"]
        outside = mask.copy()
        outside[y : y + h, x : x + w] = 0
        assert not outside.any()
    info = json.loads((out / "run.json").read_text())
    assert info["backend"] == "emulator" and info["untrained"] is True and info["frames"] == 3
    assert info["checkpoint_sha256"] == quantized_picosam3.checkpoint.weights_sha256
    assert info["kpis"]["attribution"]["frames"]["reported"] == 3 and info["kpis"]["attribution"]["mode"] == "exact"
    assert not list(out.glob(".*tmp*"))  # nothing left under temporary names


def test_headless_demo_on_a_video_follows_to_its_end(tmp_path, quantized_picosam3, panning_video):
    out = tmp_path / "video"
    result = run("--emulate", "--source", panning_video, "--checkpoint", quantized_picosam3.checkpoint.weights_path,
                 "--engine", "tflite", "--headless", "--box", "210,160,80,80", "--follow", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    lines = read_lines(out)
    assert [line["frame"] for line in lines] == list(range(12))  # every frame, then the video ended
    assert all(line["prompt_id"] == 0 and line["mask"] for line in lines)
    assert json.loads((out / "run.json").read_text())["follow"] is True


def test_roi_latency_is_emulated_and_recorded(tmp_path, quantized_picosam3, panning_video):
    out = tmp_path / "lag"
    result = run("--emulate", "--source", panning_video, "--checkpoint", quantized_picosam3.checkpoint.weights_path,
                 "--headless", "--box", "210,160,80,80", "--follow", "--roi-latency", "1,3", "--seed", 4, "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["roi_latency"] == [1, 3] and info["seed"] == 4
    assert info["kpis"]["attribution"]["mode"] == "input-tensor"  # the session had to find the ROI itself
    assert [track["prompt_id"] for track in info["kpis"]["tracks"]] == [0]
    assert {line["attribution"] for line in read_lines(out)} <= {"matched", "grouped", "ambiguous", "unmatched"}


@pytest.mark.parametrize("value", ["x", "-1", "3,1", "1,2,3", "1,"])
def test_a_bad_roi_latency_is_one_line(value):
    result = run("--emulate", "--source", PHOTO, "--headless", "--out", "o", "--roi-latency", value)
    assert result.exit_code != 0 and "--roi-latency" in result.output and "Traceback" not in result.output


def test_a_photo_without_frames_gives_one_frame_per_prompt(tmp_path, quantized_picosam3):
    out = tmp_path / "one"
    result = run("--emulate", "--source", PHOTO, "--checkpoint", quantized_picosam3.checkpoint.weights_path,
                 "--headless", "--out", out)
    assert result.exit_code == 0, result.stderr
    (line,) = read_lines(out)
    assert line["prompt"] == [0, 0, 451, 300] and line["roi_sensor"] == [0, 0, 451, 300]


@pytest.mark.parametrize(
    "args, message",
    [([], "choose one: --rpk network.rpk (the camera) or --emulate"),
     (["--rpk", "n.rpk", "--emulate", "--source", "0"], "choose one"),
     (["--emulate"], "--emulate needs --source IMAGE|VIDEO|0"),
     (["--rpk", "n.rpk", "--source", "0"], "--source and --checkpoint go with --emulate"),
     (["--emulate", "--source", "x.jpg", "--headless"], "--headless needs --out DIR"),
     (["--emulate", "--source", "x.jpg", "--out", "d"], "--out goes with --headless"),
     (["--emulate", "--source", "x.jpg", "--headless", "--out", "d", "--box", "1,2,3"], "expected four numbers"),
     (["--emulate", "--source", "missing.jpg", "--headless", "--out", "d"], "missing.jpg: no such file")],
)
def test_option_mistakes_are_one_line_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "box, message",
    [("0,0,0,10", "width and height must be positive"),
     ("500,10,20,20", "lies outside the 451x300 frame"),
     ("nan,10,20,20", "must be finite")],
)
def test_bad_prompts_are_one_line_errors(tmp_path, quantized_picosam3, box, message):
    result = run("--emulate", "--source", PHOTO, "--checkpoint", quantized_picosam3.checkpoint.weights_path,
                 "--headless", "--box", box, "--out", tmp_path / "bad")
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bad" / "frames.jsonl").exists()


def test_the_window_needs_a_gui_opencv_and_says_so(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")
    result = run("--emulate", "--source", PHOTO)
    if result.exit_code == 0:
        pytest.skip("this OpenCV has a GUI")
    assert result.exit_code == 1
    assert "the demo window needs OpenCV with GUI support" in result.stderr and "--headless" in result.stderr
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "no display to open the demo window on" in run("--emulate", "--source", PHOTO).stderr


def test_camera_demo_on_a_desktop_says_where_picamera2_comes_from(tmp_path, picosam_rpk, monkeypatch):
    import importlib.util
    import sys

    from conftest import FAKES

    spec = importlib.util.find_spec("picamera2")
    if spec is not None and FAKES not in Path(spec.origin).parents:
        pytest.skip("picamera2 is installed here")
    # Other tests put tests/fakes (holding the loopback Pi's fake picamera2) on sys.path.
    monkeypatch.setitem(sys.modules, "picamera2", None)
    result = run("--rpk", picosam_rpk, "--headless", "--out", tmp_path / "cam")
    assert result.exit_code == 1 and "picamera2 is not available" in result.stderr and "--emulate" in result.stderr


def test_cli_engine_choices_are_the_emulators():
    demo = main.commands["demo"]
    (engine,) = [p for p in demo.params if p.name == "engine"]
    assert tuple(engine.type.choices) == tuple(backends.DEMO_ENGINES) and engine.default == backends.DEFAULT_DEMO_ENGINE


class ScriptedWindow:
    """OpenCV's highgui replaced by a script (this machine's OpenCV has no GUI): it records
    what is shown and plays mouse drags and keys at given frames."""

    def __init__(self, script):
        self.script, self.shown, self.callback, self.destroyed = script, [], None, False

    def install(self, monkeypatch):
        from imx500_picosam.runtime import demo as demo_module

        fake = {
            "namedWindow": lambda name, flags=0: None,
            "setMouseCallback": lambda name, callback: setattr(self, "callback", callback),
            "imshow": lambda name, image: self.shown.append(image.copy()),
            "waitKey": self.wait_key,
            "getWindowProperty": lambda name, prop: 1.0,
            "destroyWindow": lambda name: setattr(self, "destroyed", True),
        }
        for name, function in fake.items():
            monkeypatch.setattr(demo_module.cv2, name, function)
        monkeypatch.setenv("DISPLAY", ":0")

    def wait_key(self, delay):
        for action in self.script.get(len(self.shown) - 1, []):
            if isinstance(action, str):
                return ord(action)
            (x0, y0), (x1, y1), flags = action
            self.callback(cv2.EVENT_LBUTTONDOWN, x0, y0, 0, None)
            self.callback(cv2.EVENT_MOUSEMOVE, (x0 + x1) // 2, (y0 + y1) // 2, flags, None)
            self.callback(cv2.EVENT_LBUTTONUP, x1, y1, flags, None)
        return -1


def test_the_window_prompts_by_drag_resets_with_r_and_quits_with_q(monkeypatch, quantized_picosam3):
    from imx500_picosam.model.runners import TfliteEngine
    from imx500_picosam.runtime import EmulatorBackend, Session, open_source
    from imx500_picosam.runtime.demo import run_interactive

    window = ScriptedWindow({
        1: [((140, 40), (310, 210), 0)],  # drag a box
        3: [((20, 150), (120, 250), cv2.EVENT_FLAG_SHIFTKEY)],  # shift+drag adds a second one
        6: ["r"],
        8: ["q"],
    })
    window.install(monkeypatch)
    backend = EmulatorBackend(open_source(str(PHOTO)), TfliteEngine(quantized_picosam3.tflite))
    seen = []
    with Session(backend) as session:
        original_step = session.step

        def recording_step():
            step = original_step()
            seen.append((step.result.prompt.id, step.result.prompt.box))
            return step

        session.step = recording_step
        shown = run_interactive(session, warning="UNTRAINED")
        assert [p.box for p in session.prompts] == [(0.0, 0.0, 451.0, 300.0)]  # after r
    assert shown == len(window.shown) == 9 and window.destroyed
    assert seen[0] == (0, (0.0, 0.0, 451.0, 300.0))  # the whole frame until a box is drawn
    assert seen[2] == (0, (140.0, 40.0, 170.0, 170.0))
    assert {box for _, box in seen[4:7]} == {(140.0, 40.0, 170.0, 170.0), (20.0, 150.0, 100.0, 100.0)}
    assert seen[7] == (0, (0.0, 0.0, 451.0, 300.0))
    # the shown frames carry the overlay (the mask's ROI outline at least) and the HUD
    assert all(not np.array_equal(frame, cv2.imread(str(PHOTO))) for frame in window.shown)
