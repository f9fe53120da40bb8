"""`picosam demo --rpk packerOut.zip` packages it first where imx500-package exists (as modlib
does), says in one line what to do where it cannot, and `--fps` sets the camera's frame rate.
The packager is the test double (tests/fakes/imx500-package), the camera the picamera2 fake."""

import json
import os
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from picamera2_fake import FakeSensor, make_picamera2  # noqa: E402

from conftest import FAKES
from imx500_picosam.cli import main
from imx500_picosam.runtime import imx500
from test_runtime_decode import asymmetric_logits


def packer_out_in(folder: Path, rule=None) -> Path:
    """A packerOut.zip as the converter writes it (what the packager checks), with a build
    report recording ``rule`` beside it (none without a rule)."""
    folder.mkdir(parents=True, exist_ok=True)
    packer = folder / "packerOut.zip"
    with zipfile.ZipFile(packer, "w") as archive:
        for name in ("dnnParams.xml", "manifest.json", "l2staticData.bin"):
            archive.writestr(name, f"{name} of {folder.name}")
    if rule:
        (folder / "build_report.json").write_text(json.dumps({"model": {"roi_rule": rule}}))
    return packer


@pytest.fixture
def camera(monkeypatch, picosam_rpk, scene):
    """The packager double on PATH (writing the PicoSAM-shaped RPK), picamera2's fake as the camera."""
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PACKAGER_RPK", str(picosam_rpk))
    picamera2 = make_picamera2(FakeSensor(scene, lambda tensor: asymmetric_logits()))
    monkeypatch.setattr(imx500, "import_picamera2", lambda: picamera2)
    return picamera2


def run(*args):
    return CliRunner().invoke(main, ["demo", *[str(a) for a in args]])


def test_a_packer_out_is_packaged_once_with_the_rule_of_its_build_report(tmp_path, camera):
    packer = packer_out_in(tmp_path / "build", rule="warp")
    result = run("--rpk", packer, "--fps", 15, "--headless", "--frames", 3, "--box", "500,300,260,220",
                 "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "a packerOut.zip; packaging it with imx500-package" in result.stderr
    assert f"ROI rule warp from {tmp_path / 'build' / 'build_report.json'}, 15 fps" in result.stderr
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["packaged_from"] == str(packer) and info["roi_rule"] == "warp" and info["roi_rule_source"] == "rpk"
    rpk = Path(info["rpk"])
    assert rpk.name == "network.rpk" and rpk.is_file() and tmp_path not in rpk.parents  # nothing of the user's written
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["build_report.json", "packerOut.zip"]
    assert camera.log.config["controls"]["FrameRate"] == 15 and info["fps"] == 15

    again = run("--rpk", packer, "--fps", 15, "--headless", "--frames", 2, "--box", "500,300,260,220",
                "--out", tmp_path / "run2")
    assert again.exit_code == 0, again.output
    assert f"using {rpk}, packaged earlier" in again.stderr and "packaging it" not in again.stderr
    # --roi-rule says the rule where no report does, and packages anew for it
    bare = packer_out_in(tmp_path / "copied")
    third = run("--rpk", bare, "--roi-rule", "square", "--headless", "--frames", 2, "--out", tmp_path / "run3")
    assert third.exit_code == 0, third.output
    info = json.loads((tmp_path / "run3" / "run.json").read_text())
    assert info["roi_rule"] == "square" and info["packaging_roi_rule_source"] == "--roi-rule"
    assert camera.log.config["controls"]["FrameRate"] == 30  # the RPK's inference rate


def test_without_a_rule_or_a_packager_it_says_what_to_do_in_one_line(tmp_path, camera, monkeypatch):
    bare = packer_out_in(tmp_path / "bare")
    result = run("--rpk", bare, "--headless", "--frames", 1, "--out", tmp_path / "r")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "without build_report.json beside it: say which ROI rule" in result.stderr and "--roi-rule" in result.stderr

    monkeypatch.setenv("PATH", os.defpath)  # no imx500-package
    built = packer_out_in(tmp_path / "elsewhere", rule="square")
    result = run("--rpk", built, "--headless", "--frames", 1, "--out", tmp_path / "r")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "must be packaged into an RPK first" in result.stderr and "sudo apt install imx500-tools" in result.stderr
    assert not (tmp_path / "r").exists()


def test_fps_goes_with_the_camera():
    result = run("--emulate", "--source", "x.jpg", "--fps", 10)
    assert result.exit_code == 1 and "--fps goes with --rpk" in result.stderr
    result = run("--rpk", "n.rpk", "--fps", 0)
    assert result.exit_code == 2 and "0" in result.stderr and "range" in result.stderr
