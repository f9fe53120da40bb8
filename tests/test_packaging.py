"""The package as users install it: a wheel built from this checkout, installed into fresh
venvs outside it, its commands run from a folder that is not the checkout.

* ``[build]``: ``picosam build`` must reach ``packerOut.zip`` and ``picosam demo --emulate``
  must write masks, reading only what the wheel carries (default checkpoint, calibration
  photos and their manifest). Installing the toolchain takes minutes (about 4 on this
  project's 2-core machine, from pip's sources); the build and the demo quantize for real.
* base (what ``[pi]`` adds is picamera2 alone, which needs Raspberry Pi OS's libcamera, so
  the camera is the tests' fake): no TensorFlow, MCT, converter or ONNX Runtime is installed,
  the runtime and the RPK tools work, and the toolchain commands say which extra to install.

Both skip only where no package index can be reached (pip cannot install anything then).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from typing import Optional
from pathlib import Path

import pytest

from conftest import FAKES, PROJECT_ROOT, RPK_FIXTURES

pytestmark = pytest.mark.packaging

# Distributions the toolchain and training extras bring and the base install must not.
HEAVY_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "model-compression-toolkit", "edge-mdt-tpc",
                       "imx500-converter", "uni-tensorflow", "onnxruntime", "pycocotools", "matplotlib", "torch"}
HEAVY_MODULES = ("tensorflow", "keras", "model_compression_toolkit", "edgemdt_tpc", "onnxruntime", "torch")
PHOTO = "imx500_picosam/calibration_data/photos/chelsea.png"
PIP_TIMEOUT_S = 1800


def _clean_env(**extra) -> dict:
    """The environment minus anything that would let the checkout or another venv leak in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(extra)
    return env


def _run(command, cwd, timeout=PIP_TIMEOUT_S, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, env=_clean_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def _source_copy(destination: Path) -> Path:
    """The checkout without its ignored files (venvs, build/, data/): pip builds in the
    source tree, and must not write build/lib or *.egg-info into the user's checkout."""
    gitignore = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    patterns = [line.strip().rstrip("/") for line in gitignore if line.strip() and not line.startswith("#")]
    shutil.copytree(PROJECT_ROOT, destination, symlinks=True, ignore=shutil.ignore_patterns(".git", *patterns))
    return destination


def _fresh_venv(folder: Path) -> Path:
    """A venv on the interpreter running the tests, seeing none of its packages."""
    result = _run([sys.executable, "-m", "venv", folder], cwd=folder.parent, timeout=300)
    assert result.returncode == 0, result.stderr
    return folder / "bin" / "python"


def _pip_install(python: Path, *requirements) -> None:
    """Install, or skip where no package index is reachable, or fail with pip's reason."""
    result = _run([python, "-m", "pip", "install", "--quiet", *requirements], cwd=python.parent)
    if result.returncode == 0:
        return
    probe = _run([python, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", python.parent / "probe", "click"],
                 cwd=python.parent, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"no package index reachable (pip download click failed: {probe.stderr.strip()[-300:]})")
    pytest.fail(f"pip install {' '.join(map(str, requirements))} failed:\n{result.stderr[-3000:]}")


def _installed_distributions(python: Path) -> set:
    listing = _run([python, "-c", "import importlib.metadata as m, json; "
                    "print(json.dumps(sorted(d.metadata['Name'] for d in m.distributions())))"],
                   cwd=python.parent, timeout=120)
    assert listing.returncode == 0, listing.stderr
    return {re.sub(r"[-_.]+", "-", name).lower() for name in json.loads(listing.stdout)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel --no-deps .`` of this checkout (built from a copy of it)."""
    root = tmp_path_factory.mktemp("wheel")
    source = _source_copy(root / "source")
    result = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", root / "dist", source],
                  cwd=root)
    if result.returncode != 0:
        if "Could not find a version that satisfies the requirement setuptools" in result.stderr:
            pytest.skip("no package index reachable: pip cannot fetch setuptools to build the wheel")
        pytest.fail(f"pip wheel failed:\n{result.stderr[-3000:]}")
    (built,) = (root / "dist").glob("imx500_picosam-*.whl")
    return built


@pytest.fixture
def venv_dir(tmp_path):
    """A venv folder deleted after the test (the toolchain's is 2.5 GB)."""
    folder = tmp_path / "venv"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_wheel_carries_what_the_installed_commands_read(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    manifest = json.loads((PROJECT_ROOT / "calibration_data" / "manifest.json").read_text())
    for photo in manifest["photos"]:
        assert f"imx500_picosam/calibration_data/{photo['file']}" in names
    assert {"imx500_picosam/calibration_data/manifest.json", "imx500_picosam/calibration_data/README.md",
            "imx500_picosam/training_data/photos.json"} <= names
    for listed in (PROJECT_ROOT / "training_data").iterdir():
        assert f"imx500_picosam/training_data/{listed.name}" in names
    checkpoints = [n for n in names if re.fullmatch(r"imx500_picosam/checkpoints/[^/]+\.weights\.h5", n)]
    assert checkpoints and all(n.replace(".weights.h5", ".json") in names for n in checkpoints)
    assert "firmware_packaging/rpk.py" in names


def test_wheel_with_build_extra_builds_firmware_and_runs_the_emulator_outside_the_checkout(wheel, tmp_path, venv_dir):
    python = _fresh_venv(venv_dir)
    _pip_install(python, f"{wheel}[build]")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    picosam = venv_dir / "bin" / "picosam"
    cache = tmp_path / "cache"  # a cold emulator cache: the demo quantizes from the wheel's photos

    located = _run([python, "-c", "import imx500_picosam; print(imx500_picosam.__file__)"], cwd=elsewhere, timeout=60)
    package_dir = Path(located.stdout.strip()).parent
    assert venv_dir in package_dir.parents, f"imported {package_dir}, not the installed wheel"

    firmware = tmp_path / "firmware"
    built = _run([picosam, "build", "--out", firmware], cwd=elsewhere, PICOSAM_CACHE_DIR=str(cache))
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    assert zipfile.is_zipfile(firmware / "packerOut.zip")
    report = json.loads((firmware / "build_report.json").read_text())
    assert venv_dir in Path(report["checkpoint"]["weights"]).parents, "the build did not use the wheel's checkpoint"
    assert report["quantization"]["calibration_crops"] == 80

    frames = tmp_path / "demo"
    demo = _run([picosam, "demo", "--emulate", "--headless", "--source", package_dir.parent / PHOTO,
                 "--box", "140,40,170,170", "--frames", 2, "--out", frames], cwd=elsewhere, PICOSAM_CACHE_DIR=str(cache))
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    lines = [json.loads(line) for line in (frames / "frames.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and len(list((frames / "masks").glob("*.png"))) == 2
    # quantize.int8_tflite_as_built keeps the emulator's INT8 model in the quantized-model cache.
    assert list((cache / "quantized").glob("*.tflite")), "the demo did not quantize into the fresh cache"


CAMERA_SCRIPT = r"""
import json, sys
from types import ModuleType

import cv2
import numpy as np

sys.path.insert(0, sys.argv[1])  # tests/fakes, for picamera2_fake only (not the fake picamera2 package)
from picamera2_fake import FakeSensor, make_picamera2

scene = cv2.resize(cv2.imread(sys.argv[2]), (2028, 1521))
disc = (np.hypot(*np.mgrid[-48:48, -48:48]) < 30).astype(np.float32) * 16 - 8  # logits: a disc in the ROI
fake = make_picamera2(FakeSensor(scene, lambda tensor: disc))
picamera2, devices = ModuleType("picamera2"), ModuleType("picamera2.devices")
picamera2.Picamera2, devices.IMX500, picamera2.devices = fake.Picamera2, fake.IMX500, devices
sys.modules.update({"picamera2": picamera2, "picamera2.devices": devices})

from imx500_picosam.cli import main
try:
    main(["demo", "--rpk", sys.argv[3], "--headless", "--box", "400,300,300,300", "--frames", "3", "--out", sys.argv[4]])
except SystemExit as done:
    assert done.code in (0, None), done.code
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_base_install_runs_the_camera_side_without_tensorflow(wheel, tmp_path, venv_dir, picosam_rpk):
    python = _fresh_venv(venv_dir)
    _pip_install(python, wheel)
    assert not _installed_distributions(python) & HEAVY_DISTRIBUTIONS
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    picosam = venv_dir / "bin" / "picosam"

    imports = _run([python, "-c", "import json, sys\n"
                    "import imx500_picosam.cli, imx500_picosam.runtime, imx500_picosam.runtime.demo\n"
                    "import imx500_picosam.runtime.imx500, imx500_picosam.deploy.flash, imx500_picosam.deploy.smoke\n"
                    f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})))"],
                   cwd=elsewhere, timeout=120)
    assert imports.returncode == 0, imports.stderr
    assert json.loads(imports.stdout) == []

    assert _run([picosam, "--help"], cwd=elsewhere, timeout=60).returncode == 0
    inspected = _run([picosam, "rpk", "inspect", RPK_FIXTURES / "imx500_network_deeplabv3plus.rpk", "--json"],
                     cwd=elsewhere, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["input_tensor"]

    # The Pi's camera path end to end, picamera2 replaced by the tests' fake of it.
    photo = (Path(python).parents[1] / "lib").glob(f"python*/site-packages/{PHOTO}")
    camera = _run([python, "-c", CAMERA_SCRIPT, FAKES, next(photo), picosam_rpk, tmp_path / "camera"],
                  cwd=elsewhere, timeout=120)
    assert camera.returncode == 0, camera.stderr[-3000:]
    loaded = set(json.loads(camera.stdout.strip().splitlines()[-1]))
    assert "imx500_picosam" in loaded and not loaded & set(HEAVY_MODULES)
    assert len((tmp_path / "camera" / "frames.jsonl").read_text().splitlines()) == 3

    # What needs the toolchain says, in one line, which extra brings it.
    for command in (["build", "--out", tmp_path / "fw"], ["init-checkpoint", "--out", tmp_path / "i.weights.h5"]):
        refused = _run([picosam, *command], cwd=elsewhere, timeout=60)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            "Error: tensorflow is not installed; this command needs the build toolchain: "
            "pip install 'imx500-picosam[build]'"]
    assert not (tmp_path / "fw").exists() and not (tmp_path / "i.weights.h5").exists()


# -- beside Raspberry Pi OS: apt's numpy kept, and Python 3.13 (Trixie) ---------------------------

BOOKWORM_NUMPY = "1.24.2"  # python3-numpy in Raspberry Pi OS Bookworm, which apt's picamera2 is built against


def _python313() -> Optional[str]:
    """A Python 3.13 interpreter ($PICOSAM_PYTHON313, python3.13 on PATH, or pyenv's), or None."""
    candidates = [os.environ.get("PICOSAM_PYTHON313"), shutil.which("python3.13")]
    candidates += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob("3.13*/bin/python3.13"))
    for candidate in candidates:  # a pyenv shim on PATH may name a version it will not run
        if candidate and Path(candidate).is_file() and subprocess.run(
                [candidate, "-c", "import sys, venv; assert sys.version_info[:2] == (3, 13)"],
                capture_output=True, timeout=60).returncode == 0:
            return candidate
    return None


def _camera_side_commands_run(venv_dir: Path, cwd: Path) -> None:
    """`picosam --help`, `doctor --profile all` and `rpk inspect` end without a traceback."""
    picosam = venv_dir / "bin" / "picosam"
    helped = _run([picosam, "--help"], cwd=cwd, timeout=120)
    assert helped.returncode == 0 and "Traceback" not in helped.stderr, helped.stderr[-2000:]
    doctor = _run([picosam, "doctor", "--profile", "all"], cwd=cwd, timeout=300)
    # This machine is no Pi (and the toolchain is not installed): lines FAIL, none crashes.
    assert doctor.returncode in (0, 1) and "Traceback" not in doctor.stdout + doctor.stderr, doctor.stderr[-2000:]
    lines = [line for line in doctor.stdout.splitlines() if line.strip()]
    checks = [line for line in lines if re.match(r"(OK  |FAIL|SKIP) ", line)]
    assert len(checks) >= 10 and any(line.startswith("FAIL picamera2") for line in checks), doctor.stdout
    inspected = _run([picosam, "rpk", "inspect", RPK_FIXTURES / "imx500_network_deeplabv3plus.rpk"], cwd=cwd,
                     timeout=120)
    assert inspected.returncode == 0 and "Traceback" not in inspected.stderr, inspected.stderr[-2000:]
    assert "input" in inspected.stdout.lower()


def _numpy_version(python: Path, cwd: Path) -> str:
    shown = _run([python, "-c", "import numpy; print(numpy.__version__)"], cwd=cwd, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    return shown.stdout.strip()


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="Bookworm's numpy 1.24.2 is a Python 3.11 build")
def test_base_install_keeps_bookworms_numpy_1_24_2(wheel, tmp_path, venv_dir):
    """A venv that already has numpy 1.24.2 (as a --system-site-packages venv on Bookworm sees
    apt's) keeps it: the base install picks an OpenCV that accepts numpy 1, so apt's picamera2
    (built against numpy 1) still imports."""
    python = _fresh_venv(venv_dir)
    _pip_install(python, f"numpy=={BOOKWORM_NUMPY}")
    _pip_install(python, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _numpy_version(python, elsewhere) == BOOKWORM_NUMPY
    opencv = _run([python, "-c", "import cv2; print(cv2.__version__)"], cwd=elsewhere, timeout=120)
    assert opencv.returncode == 0, opencv.stderr[-2000:]  # the OpenCV picked runs on numpy 1.24.2
    _camera_side_commands_run(venv_dir, elsewhere)
    assert _numpy_version(python, elsewhere) == BOOKWORM_NUMPY


def test_base_install_on_python_3_13(wheel, tmp_path, venv_dir):
    """Raspberry Pi OS Trixie's Python: the base install and the camera-side commands work."""
    interpreter = _python313()
    if interpreter is None:
        pytest.skip("no Python 3.13 interpreter here (set PICOSAM_PYTHON313, or install python3.13)")
    result = _run([interpreter, "-m", "venv", venv_dir], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    python = venv_dir / "bin" / "python"
    _pip_install(python, wheel)
    version = _run([python, "-c", "import sys; print(sys.version_info[:2])"], cwd=tmp_path, timeout=60)
    assert version.stdout.strip() == "(3, 13)"
    assert not _installed_distributions(python) & HEAVY_DISTRIBUTIONS
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _camera_side_commands_run(venv_dir, elsewhere)
