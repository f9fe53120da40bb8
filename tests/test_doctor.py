"""`picosam doctor` against fake filesystem trees and fake commands."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from imx500_picosam.deploy import doctor
from imx500_picosam.cli import main
from imx500_picosam.deploy.doctor import INJECTION_OVERLAY, System, run_checks

LIBCAMERA_LISTING = ("Available cameras\n-----------------\n"
                     "0 : imx500 [4056x3040 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a)\n")


def healthy_pi(root, config_line=INJECTION_OVERLAY):
    """A tree shaped like Raspberry Pi OS with a working AI Camera."""
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    (root / "proc/meminfo").write_text("MemTotal:        8245328 kB\nMemAvailable:    6123456 kB\n")
    (root / "sys/module/imx500").mkdir(parents=True)
    device = root / "sys/class/video4linux/v4l-subdev2/device"
    (device / "driver").mkdir(parents=True)
    os.symlink("../../../../module/imx500", device / "driver/module")
    (root / "dev").mkdir()
    (root / "dev/v4l-subdev2").write_text("")
    (root / "lib/firmware").mkdir(parents=True)
    for name in ("imx500_loader.fpk", "imx500_firmware.fpk"):
        (root / "lib/firmware" / name).write_bytes(b"\0")
    spi = root / "sys/bus/spi/drivers/rp2040-spi"
    spi.mkdir(parents=True)
    os.symlink("../../../../devices/platform/spi0.0", spi / "spi0.0")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text(f"camera_auto_detect=1\n[all]\n{config_line}\n")
    return root


def commands(listing=LIBCAMERA_LISTING, java='openjdk version "17.0.15" 2025-04-15\n', picamera2_import=(0, "")):
    def run(command):
        if command[0] == sys.executable and command[1:] == ["-c", "import picamera2"]:
            return picamera2_import
        if command[0] == "rpicam-hello":
            return (0, listing) if listing is not None else (127, "not found")
        if command[0] == "libcamera-hello":
            return 127, "not found"
        if command[0] == "java":
            return (0, java) if java is not None else (127, "java: not found")
        raise AssertionError(command)
    return run


def versions(**overrides):
    table = {"picamera2": "0.3.38", "model-compression-toolkit": "2.5.1", "numpy": "1.26.4"}
    table.update(overrides)
    return lambda name: table.get(name)


def system(root, **fields):
    defaults = dict(root=root, run=commands(), version_of=versions(),
                    requirements=lambda: ["click>=8", 'model-compression-toolkit==2.5.1; extra == "build"',
                                          'numpy<2; extra == "build"', 'picamera2; extra == "pi"'],
                    python_version=(3, 11, 7), free_disk_bytes=lambda path: 40 * 10**9, work_dir=root)
    defaults.update(fields)
    return System(**defaults)


def by_name(checks):
    return {check.name: check for check in checks}


def test_a_healthy_pi_passes_every_check(tmp_path):
    checks = run_checks(system(healthy_pi(tmp_path)), "auto", injection=True)
    assert [c.name for c in checks][:2] == ["imx500 driver", "v4l-subdev node"]  # auto picked the Pi
    assert all(c.ok for c in checks), [c.line() for c in checks]
    found = by_name(checks)
    assert found["v4l-subdev node"].detail == "/dev/v4l-subdev2"
    assert "imx500 [4056x3040" in found["libcamera camera"].detail
    assert found["RP2040 bridge"].detail == "spi0.0 bound (firmware version not exposed)"
    assert all(line.startswith("OK   ") for line in (c.line() for c in checks))


@pytest.mark.parametrize("breakage, name, fix", [
    (lambda root: (root / "sys/module/imx500").rmdir(), "imx500 driver", "imx500-all"),
    (lambda root: (root / "dev/v4l-subdev2").unlink(), "v4l-subdev node", "reseat the camera ribbon"),
    (lambda root: (root / "lib/firmware/imx500_loader.fpk").unlink(), "sensor firmware", "imx500-firmware"),
    (lambda root: (root / "sys/bus/spi/drivers/rp2040-spi/spi0.0").unlink(), "RP2040 bridge", "reseat"),
    (lambda root: (root / "proc/meminfo").write_text("MemAvailable:      102400 kB\n"), "free memory", "close other"),
    (lambda root: (root / "boot/firmware/config.txt").write_text("dtoverlay=imx500,cam0  # no bypass-cache\n"),
     "injection overlay", INJECTION_OVERLAY),
])
def test_each_pi_fault_is_one_fail_line_with_its_fix(tmp_path, breakage, name, fix):
    root = healthy_pi(tmp_path)
    breakage(root)
    checks = run_checks(system(root), "pi", injection=True)
    failed = [c for c in checks if c.ok is False]
    assert [c.name for c in failed] == [name]
    line = failed[0].line()
    assert line.startswith(f"FAIL {name}: ") and f"-> fix: " in line and fix in line and "\n" not in line


def test_camera_listing_picamera2_version_and_the_optional_overlay(tmp_path):
    root = healthy_pi(tmp_path, config_line="#" + INJECTION_OVERLAY)  # commented out
    checks = by_name(run_checks(system(root, run=commands(listing="No cameras available!\n"),
                                       version_of=versions(picamera2="0.3.31")), "pi"))
    assert checks["libcamera camera"].ok is False and "lists no imx500" in checks["libcamera camera"].detail
    # 0.3.31 has every call demo --rpk makes (since 0.3.22) but not tensor injection (0.3.32)
    assert checks["picamera2"].ok is True and "evaluate --on-camera needs >= 0.3.32" in checks["picamera2"].detail
    injection = by_name(run_checks(system(root, version_of=versions(picamera2="0.3.31")), "pi", injection=True))
    assert injection["picamera2"].ok is False and "needs >= 0.3.32" in injection["picamera2"].detail
    fix = injection["picamera2"].fix
    assert fix.startswith("sudo apt update && sudo apt install python3-picamera2") and "--only-upgrade" not in fix
    old = by_name(run_checks(system(root, version_of=versions(picamera2="0.3.21")), "pi"))["picamera2"]
    assert old.ok is False and "needs >= 0.3.22" in old.detail
    ok = by_name(run_checks(system(root, version_of=versions(picamera2="0.3.32")), "pi", injection=True))["picamera2"]
    assert ok.ok is True and ok.detail == "0.3.32 (imports)"
    assert checks["injection overlay"].ok is None  # not asked for: reported, not failed
    assert checks["injection overlay"].line().startswith("SKIP injection overlay")
    root2 = healthy_pi(tmp_path / "b", config_line="dtoverlay=imx500,cam1,bypass-cache")
    assert by_name(run_checks(system(root2), "pi", injection=True))["injection overlay"].ok is True


def test_build_machine_checks(tmp_path):
    good = by_name(run_checks(system(tmp_path), "auto"))  # no device-tree model: a build machine
    assert set(good) == {"python", "java 17", "pinned toolchain", "disk"} and all(c.ok for c in good.values())
    assert good["pinned toolchain"].detail == "1 pins as installed"
    bad = by_name(run_checks(system(tmp_path, python_version=(3, 12, 1), run=commands(java='openjdk version "21.0.2"'),
                                    version_of=versions(**{"model-compression-toolkit": "2.6.0"}),
                                    free_disk_bytes=lambda path: 10**9), "build"))
    assert not any(c.ok for c in bad.values())
    assert "model-compression-toolkit 2.6.0 (pinned 2.5.1)" in bad["pinned toolchain"].detail
    assert bad["java 17"].detail == "java 21" and "openjdk-17" in bad["java 17"].fix
    no_java = by_name(run_checks(system(tmp_path, run=commands(java=None)), "build"))
    assert no_java["java 17"].detail == "java is not installed"


SIMPLEJPEG_CLASH = """Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "simplejpeg/__init__.py", line 1, in init simplejpeg._jpeg
ValueError: numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88 from PyObject
"""


def test_picamera2_is_imported_for_real_and_an_abi_clash_is_named(tmp_path):
    root = healthy_pi(tmp_path)
    clash = by_name(run_checks(system(root, run=commands(picamera2_import=(1, SIMPLEJPEG_CLASH)),
                                      version_of=versions(numpy="2.2.6")), "pi"))["picamera2"]
    line = clash.line()
    assert clash.ok is False and "numpy 2.2.6" in line and "numpy.dtype size changed" in line
    assert "pip uninstall -y numpy" in line and "\n" not in line
    other = by_name(run_checks(system(root, run=commands(picamera2_import=(1, "ImportError: libcamera"))),
                               "pi"))["picamera2"]
    assert other.ok is False and "ImportError: libcamera" in other.detail
    missing = by_name(run_checks(system(root, version_of=versions(picamera2=None)), "pi"))["picamera2"]
    assert "apt install python3-picamera2" in missing.fix and "--only-upgrade" not in missing.fix


def test_the_toolchain_line_checks_the_build_extras_pins(tmp_path):
    good = by_name(run_checks(system(tmp_path), "build"))["pinned toolchain"]
    assert good.ok and good.detail == "1 pins as installed"  # the pin behind extra == "build" is counted
    wrong = by_name(run_checks(system(tmp_path, version_of=versions(**{"model-compression-toolkit": "2.6.0"})),
                               "build"))["pinned toolchain"]
    assert wrong.ok is False and "pinned 2.5.1" in wrong.detail


def test_a_missing_config_txt_is_said_so(tmp_path):
    root = healthy_pi(tmp_path)
    (root / "boot/firmware/config.txt").unlink()
    check = by_name(run_checks(system(root), "pi", injection=True))["injection overlay"]
    assert check.ok is False and "no config.txt" in check.detail and "has no" not in check.detail


def test_cli_exit_code_is_zero_only_when_all_pass(tmp_path, monkeypatch):
    root = healthy_pi(tmp_path)
    monkeypatch.setattr(doctor, "System", lambda: system(root))
    result = CliRunner().invoke(main, ["doctor", "--injection"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == 8
    (root / "dev/v4l-subdev2").unlink()
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1 and "FAIL v4l-subdev node" in result.output


def test_doctor_imports_without_tensorflow_or_picamera2():
    code = ("import sys, imx500_picosam.deploy.doctor; "
            "assert 'tensorflow' not in sys.modules and 'picamera2' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
