"""The real, unmocked firmware build: PicoSAM3 -> MCT PTQ -> imxconv-tf -> packerOut.zip.

Only the Raspberry-Pi-only packager is a test double (tests/fakes/imx500-package); MCT,
edge-mdt-tpc and Sony's converter are the pinned real ones.
"""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import FAKES, RPK_FIXTURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("firmware") / "build"
    env = dict(os.environ)
    vendor_rpk = RPK_FIXTURES / "imx500_network_inputtensoronly.rpk"
    if vendor_rpk.is_file():
        env["PATH"] = f"{FAKES}{os.pathsep}{env['PATH']}"
        env["FAKE_PACKAGER_RPK"] = str(vendor_rpk)
    completed = subprocess.run(
        [sys.executable, "-m", "imx500_picosam", "build", "--build", str(out), "--inference-rate", "25"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((out / "build_report.json").read_text())
    return out, report, completed, vendor_rpk.is_file()


def test_packer_out_is_a_converter_package(build):
    out, report, _, _ = build
    names = zipfile.ZipFile(out / "packerOut.zip").namelist()
    assert {"dnnParams.xml", "manifest.json", "l2staticData.bin"} <= set(names)
    assert report["artifacts"]["packerOut.zip"] == str(out / "packerOut.zip")


def test_sensor_tensors_are_96x96x3_in_and_96x96x1_out(build):
    _, report, _, _ = build
    (tensor_in,) = report["converter"]["input_tensors"]
    (tensor_out,) = report["converter"]["output_tensors"]
    assert tensor_in["shape"] == [96, 96, 3]
    assert tensor_in["scale"] == pytest.approx(1 / 256) and not tensor_in["signed"]
    assert tensor_out["shape"] == [96, 96, 1]


def test_fits_in_chip(build):
    converter = json.loads(json.dumps(build[1]["converter"]))
    assert converter["fit_in_chip"] is True
    assert 0 < converter["memory_usage_mb"] <= converter["total_on_chip_mb"] <= 8.0


def test_default_build_uses_the_shipped_trained_checkpoint(build):
    _, report, completed, _ = build
    assert report["checkpoint"]["provenance"]["kind"] == "trained"
    assert not any("UNTRAINED" in warning for warning in report["warnings"])
    assert "UNTRAINED" not in completed.stderr


def test_report_contents(build):
    _, report, completed, _ = build
    assert report["model"]["parameters"] == 1_371_418
    assert report["model"]["conv_macs"] == 330_162_496
    assert report["toolchain"]["model-compression-toolkit"] == "2.5.1"
    assert report["toolchain"]["edge-mdt-tpc"] == "1.3.0"
    assert report["toolchain"]["imx500-converter"] == "3.19.2"
    assert report["quantization"]["calibration_crops"] >= 64
    agreement = report["float_vs_quantized"]
    assert agreement["crops"] >= 32 and 0.0 <= agreement["mean_iou"] <= 1.0
    assert set(report["stage_seconds"]) >= {"quantize", "convert", "package"}
    assert "fit in chip: True" in completed.stdout


def test_packaged_with_intrinsics_where_the_packager_exists(build):
    out, report, _, have_packager = build
    if not have_packager:
        assert report["packaging"]["status"] == "skipped"
        return
    from firmware_packaging.rpk import read_rpk

    assert report["packaging"]["status"] == "packaged"
    package = read_rpk(out / "network.rpk")
    # The shipped default is a warp model: no input_aspect_ratio, so the sensor stretches the box's ROI.
    assert report["model"]["roi_rule"] == "warp"
    assert package.intrinsics == {"task": "segmentation", "inference_rate": 25.0}


def test_no_temporary_files_left(build):
    out = build[0]
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert leftovers == []
