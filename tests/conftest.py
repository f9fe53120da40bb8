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
