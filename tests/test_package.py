import zipfile

import pytest

from firmware_packaging.rpk import read_rpk
from imx500_picosam.errors import PicosamError
from imx500_picosam.firmware.package import package_rpk


@pytest.fixture
def packer_out(tmp_path):
    """A zip with the members of a real imxconv-tf packerOut.zip (contents irrelevant here)."""
    path = tmp_path / "packerOut.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("dnnParams.xml", "manifest.json", "l2staticData.bin", "verTable.txt"):
            archive.writestr(name, b"x")
    return path


def test_without_the_packager_it_stops_after_packer_out(tmp_path, packer_out, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = package_rpk(packer_out, tmp_path / "build", inference_rate=30, roi_rule="square")
    assert result.status == "skipped" and result.rpk is None
    assert "ships only in Raspberry Pi OS" in result.message and "make package" in result.message
    assert "\n" not in result.message


def test_packages_and_embeds_intrinsics(tmp_path, packer_out, fake_packager_env):
    result = package_rpk(packer_out, tmp_path / "build", inference_rate=12.5, roi_rule="square")
    assert result.status == "packaged" and result.rpk == tmp_path / "build" / "network.rpk"
    packaged, vendor = read_rpk(result.rpk), read_rpk(fake_packager_env)
    assert packaged.intrinsics == {"task": "segmentation", "inference_rate": 12.5,
                                   "input_aspect_ratio": {"width": 1, "height": 1}}
    firmware = result.rpk.read_bytes()[: packaged.cpio_offset]
    assert firmware == fake_packager_env.read_bytes()[: vendor.cpio_offset]
    assert packaged.network_info == vendor.network_info


def test_packager_failure_is_one_line_and_leaves_no_rpk(tmp_path, packer_out, fake_packager_env, monkeypatch):
    monkeypatch.setenv("FAKE_PACKAGER_FAIL", "1")
    with pytest.raises(PicosamError) as err:
        package_rpk(packer_out, tmp_path / "build", inference_rate=30, roi_rule="square")
    assert "imx500-package failed" in str(err.value) and "firmware signing error" in str(err.value)
    assert not (tmp_path / "build" / "network.rpk").exists()


def test_missing_packer_out(tmp_path):
    with pytest.raises(PicosamError, match="packerOut.zip: packerOut.zip not found"):
        package_rpk(tmp_path / "packerOut.zip", tmp_path, inference_rate=30, roi_rule="square")
