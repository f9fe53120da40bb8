"""``picosam doctor``: one line per check, OK or FAIL with the fix.

Two sets of checks. On a Raspberry Pi with the AI Camera: the imx500 kernel driver and its
v4l-subdev node (picamera2's "Requested camera dev-node not found", picamera2#1180, is the
most common first error), the camera as libcamera lists it, the sensor firmware files, the
RP2040 bridge, picamera2's version, the ``dtoverlay`` that tensor injection needs and free
memory. On a build machine: Python, Java 17 (imxconv-tf), the pinned toolchain and disk.

Every probe reads through a :class:`System` (a root folder standing for ``/``, a command
runner, installed versions, disk and memory figures), so the tests run them against fake
filesystem trees. Nothing here imports TensorFlow or picamera2 into this process: picamera2
is imported for real in a child process (an install whose numpy shadows the one apt's
picamera2 was built against fails there with "numpy.dtype size changed", and doctor names
the clash), and it runs on a bare Pi.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ..extras import NUMPY_ABI_FIX, PICAMERA2_REINSTALL, is_numpy_abi_clash

# The oldest picamera2 with the calls this project makes (read in picamera2's history): IMX500's
# get_outputs, get_kpi_info, set_inference_roi_abs, input_tensor_image, network_intrinsics,
# camera_num and show_network_fw_progress_bar came with picamera2/devices/imx500 in 0.3.22;
# tensor injection (IMX500(..., tensor_injection=True), prepare_tensor_for_injection,
# get_injection_cmp_frm, __set_input_tensor) in 0.3.32, needed only by evaluate --on-camera.
PICAMERA2_MINIMUM = (0, 3, 22)
PICAMERA2_INJECTION_MINIMUM = (0, 3, 32)
PICAMERA2_UPGRADE = ("sudo apt update && sudo apt install python3-picamera2 (apt installs the newest picamera2 "
                     "Raspberry Pi's archive carries)")
INJECTION_OVERLAY = "dtoverlay=imx500,cam0,bypass-cache"
FIRMWARE_FILES = ("imx500_loader.fpk", "imx500_firmware.fpk")
JAVA_MAJOR = 17
MIN_FREE_MEMORY_MB = 300  # picamera2's 12 buffers of a 1280x960 RGB stream plus Python and OpenCV
MIN_FREE_DISK_GB = 5.0  # the toolchain's build folder, caches and a checkpoint or two
CAMERA_LISTERS = (["rpicam-hello", "--list-cameras"], ["libcamera-hello", "--list-cameras"])
IMX500_SETUP = "sudo apt install imx500-all && sudo reboot"


@dataclass(frozen=True)
class Check:
    name: str
    ok: Optional[bool]  # None: skipped (does not fail the run)
    detail: str
    fix: str = ""

    def line(self) -> str:
        status = {True: "OK  ", False: "FAIL", None: "SKIP"}[self.ok]
        text = f"{status} {self.name}: {self.detail}"
        return text + (f" -> fix: {self.fix}" if self.ok is False and self.fix else "")


def _run(command: Sequence[str], timeout: float = 30.0) -> Tuple[int, str]:
    """(exit status, stdout + stderr); 127 when the program is missing."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return 127, f"{command[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{command[0]}: no answer within {timeout:.0f} s"
    return done.returncode, (done.stdout or "") + (done.stderr or "")


def _installed(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class System:
    """The machine as the probes see it; every field can be replaced in tests."""

    root: Path = Path("/")
    run: Callable[[Sequence[str]], Tuple[int, str]] = _run
    version_of: Callable[[str], Optional[str]] = _installed
    requirements: Callable[[], Optional[List[str]]] = field(default=lambda: metadata.requires("imx500-picosam"))
    python_version: Tuple[int, int, int] = tuple(sys.version_info[:3])  # type: ignore[assignment]
    free_disk_bytes: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free
    work_dir: Path = Path(".")

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def import_picamera2(self) -> Tuple[int, str]:
        """Import picamera2 in a child process of this interpreter: (exit status, output)."""
        return self.run([sys.executable, "-c", "import picamera2"])

    def read(self, absolute: str) -> Optional[str]:
        try:
            return self.path(absolute).read_text(errors="replace")
        except OSError:
            return None


# -- the Pi ------------------------------------------------------------------------------------

def is_raspberry_pi(system: System) -> bool:
    model = system.read("/proc/device-tree/model") or ""
    return "Raspberry Pi" in model


def imx500_subdevs(system: System) -> List[int]:
    """v4l-subdev numbers whose driver module is imx500 (the way picamera2's IMX500() looks)."""
    found = []
    for i in range(32):
        module = system.path(f"/sys/class/video4linux/v4l-subdev{i}/device/driver/module")
        if module.is_symlink() and "imx500" in os.readlink(module):
            found.append(i)
    return found


def check_driver(system: System) -> Check:
    loaded = system.path("/sys/module/imx500").is_dir()
    return Check("imx500 driver", loaded, "kernel module loaded" if loaded else "the imx500 kernel module is not loaded",
                 f"{IMX500_SETUP}; with camera_auto_detect=0 in /boot/firmware/config.txt add dtoverlay=imx500")


def check_subdev(system: System) -> Check:
    nodes = [i for i in imx500_subdevs(system) if system.path(f"/dev/v4l-subdev{i}").exists()]
    if nodes:
        return Check("v4l-subdev node", True, ", ".join(f"/dev/v4l-subdev{i}" for i in nodes))
    return Check("v4l-subdev node", False, "no /dev/v4l-subdev* belongs to imx500 (picamera2 says "
                 "'Requested camera dev-node not found')",
                 "power off, reseat the camera ribbon at both ends, power on; "
                 f"if it persists: {IMX500_SETUP}")


def check_libcamera(system: System) -> Check:
    for command in CAMERA_LISTERS:
        status, output = system.run(command)
        if status == 127:
            continue
        if "imx500" in output:
            line = next(l.strip() for l in output.splitlines() if "imx500" in l)
            return Check("libcamera camera", True, line)
        return Check("libcamera camera", False, f"`{' '.join(command)}` lists no imx500",
                     "check the ribbon cable and that no other program holds the camera; then reboot")
    return Check("libcamera camera", False, "neither rpicam-hello nor libcamera-hello is installed",
                 "sudo apt install rpicam-apps")


def check_firmware(system: System) -> Check:
    folder = system.path("/lib/firmware")
    missing = [name for name in FIRMWARE_FILES if not (folder / name).is_file()]
    present = sorted(p.name for p in folder.glob("imx500_*.fpk")) if folder.is_dir() else []
    if missing:
        return Check("sensor firmware", False, f"/lib/firmware lacks {', '.join(missing)}",
                     "sudo apt install imx500-firmware (or imx500-all)")
    return Check("sensor firmware", True, ", ".join(present))


def check_rp2040(system: System) -> Check:
    """The RP2040 that streams the network to the sensor over SPI. Its firmware version is
    reported where the kernel exposes one; otherwise only the bound driver is checked."""
    driver = system.path("/sys/bus/spi/drivers/rp2040-spi")
    if not driver.is_dir():
        return Check("RP2040 bridge", False, "no rp2040-spi driver: the network upload path is missing",
                     f"{IMX500_SETUP} (the imx500 overlay brings the RP2040 SPI driver)")
    devices = [p.name for p in driver.iterdir() if p.is_symlink()]
    if not devices:
        return Check("RP2040 bridge", False, "the rp2040-spi driver has no device bound",
                     "reseat the camera ribbon and reboot")
    version = None
    for device in devices:
        for name in ("firmware_version", "fw_version", "version"):
            text = system.read(f"/sys/bus/spi/drivers/rp2040-spi/{device}/{name}")
            if text:
                version = text.strip()
    detail = f"{devices[0]} bound" + (f", firmware {version}" if version else " (firmware version not exposed)")
    return Check("RP2040 bridge", True, detail)




def check_picamera2(system: System, injection: bool = False) -> Check:
    """picamera2 imported for real (in a child process), then its version: the oldest with the
    calls ``demo --rpk`` makes, or with tensor injection when ``injection`` is asked for."""
    version = system.version_of("picamera2")
    minimum = PICAMERA2_INJECTION_MINIMUM if injection else PICAMERA2_MINIMUM
    wanted = ".".join(map(str, minimum))
    if version is None:
        return Check("picamera2", False, "not installed for this Python",
                     "sudo apt install python3-picamera2, and make the venv with --system-site-packages")
    status, output = system.import_picamera2()
    if status != 0:
        last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
        if is_numpy_abi_clash(output):
            numpy_version = system.version_of("numpy") or "?"
            return Check("picamera2", False, f"{version} is installed but its import fails: numpy {numpy_version} "
                         f"in this venv shadows the numpy apt's picamera2 was built against ({last[:100]})",
                         NUMPY_ABI_FIX)
        return Check("picamera2", False, f"{version} is installed but `import picamera2` fails: {last[:120]}",
                     PICAMERA2_REINSTALL)
    have = _version_tuple(version)
    ok = have >= minimum
    if not ok:
        need = "tensor injection (--injection) needs" if injection else "needs"
        return Check("picamera2", False, f"{version} (imports; {need} >= {wanted})", PICAMERA2_UPGRADE)
    note = ""
    if not injection and have < PICAMERA2_INJECTION_MINIMUM:
        note = f"; evaluate --on-camera needs >= {'.'.join(map(str, PICAMERA2_INJECTION_MINIMUM))}"
    return Check("picamera2", True, f"{version} (imports{note})")


def config_txt(system: System) -> Tuple[str, Optional[str]]:
    for place in ("/boot/firmware/config.txt", "/boot/config.txt"):
        text = system.read(place)
        if text is not None:
            return place, text
    return "/boot/firmware/config.txt", None


def has_injection_overlay(text: str) -> bool:
    """An active ``dtoverlay=imx500,...`` line with ``bypass-cache`` (any camera port)."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().replace(" ", "")
        if line.startswith("dtoverlay=imx500") and "bypass-cache" in line.split(",")[1:]:
            return True
    return False


def check_injection_overlay(system: System, required: bool) -> Check:
    place, text = config_txt(system)
    ok = text is not None and has_injection_overlay(text)
    if ok:
        return Check("injection overlay", True, f"{place} has dtoverlay=imx500,...,bypass-cache")
    if text is None:
        detail = (f"no config.txt (neither /boot/firmware/config.txt nor /boot/config.txt can be read; "
                  f"`{INJECTION_OVERLAY}` is needed by `picosam evaluate --on-camera`)")
    else:
        detail = f"{place} has no `{INJECTION_OVERLAY}` line (needed by `picosam evaluate --on-camera`)"
    if not required:
        return Check("injection overlay", None, detail + "; pass --injection to require it")
    return Check("injection overlay", False, detail, f"add `{INJECTION_OVERLAY}` to {place} and reboot")


def check_memory(system: System) -> Check:
    text = system.read("/proc/meminfo") or ""
    match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", text, re.M)
    if match is None:
        return Check("free memory", False, "cannot read MemAvailable from /proc/meminfo", "")
    available_mb = int(match.group(1)) // 1024
    return Check("free memory", available_mb >= MIN_FREE_MEMORY_MB,
                 f"{available_mb} MB available (needs {MIN_FREE_MEMORY_MB})",
                 "close other programs (a desktop session, browsers) or use a smaller main stream")


def pi_checks(system: System, injection: bool = False) -> List[Check]:
    return [check_driver(system), check_subdev(system), check_libcamera(system), check_firmware(system),
            check_rp2040(system), check_picamera2(system, injection), check_injection_overlay(system, injection),
            check_memory(system)]


# -- the build machine -------------------------------------------------------------------------

def check_python(system: System) -> Check:
    version = system.python_version
    ok = (3, 10) <= tuple(version[:2]) <= (3, 11)
    return Check("python", ok, ".".join(map(str, version)) + ("" if ok else " (the toolchain needs 3.10 or 3.11)"),
                 "install Python 3.11 and make the venv with it (make venv PYTHON=python3.11)")


def check_java(system: System) -> Check:
    status, output = system.run(["java", "-version"])
    fix = "sudo apt install openjdk-17-jre-headless (imxconv-tf runs on Java 17)"
    if status != 0:
        return Check("java 17", False, "java is not installed" if status == 127 else output.strip()[:80], fix)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    major = int(match.group(1)) if match else None
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    ok = major == JAVA_MAJOR
    return Check("java 17", ok, f"java {major}" if major else "unrecognised `java -version`", fix)


def check_toolchain(system: System) -> Check:
    """Every ``==`` pin of the installed package's requirements that applies to the ``[build]``
    profile here (its markers evaluated with ``extra == "build"``, as pip evaluates them for
    ``pip install 'imx500-picosam[build]'``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    requirements = system.requirements()
    if requirements is None:
        return Check("pinned toolchain", False, "imx500-picosam is not installed", "pip install -e .")
    wrong = []
    pins = 0
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": "build"}):
            continue
        pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if not pinned:
            continue
        pins += 1
        installed = system.version_of(requirement.name)
        if installed != pinned[0]:
            wrong.append(f"{requirement.name} {installed or 'missing'} (pinned {pinned[0]})")
    if wrong:
        return Check("pinned toolchain", False, "; ".join(wrong), "pip install -e . in a fresh venv (make venv)")
    return Check("pinned toolchain", True, f"{pins} pins as installed")


def check_disk(system: System) -> Check:
    free_gb = system.free_disk_bytes(system.work_dir) / 1e9
    return Check("disk", free_gb >= MIN_FREE_DISK_GB, f"{free_gb:.1f} GB free in {system.work_dir.resolve()} "
                 f"(needs {MIN_FREE_DISK_GB:.0f})", "free some space or build elsewhere (--build DIR)")


def build_checks(system: System) -> List[Check]:
    return [check_python(system), check_java(system), check_toolchain(system), check_disk(system)]


def run_checks(system: System, profile: str = "auto", injection: bool = False) -> List[Check]:
    """``profile``: 'pi', 'build', 'all' or 'auto' (the Pi's checks on a Raspberry Pi, else the build machine's)."""
    if profile == "auto":
        profile = "pi" if is_raspberry_pi(system) else "build"
    checks: List[Check] = []
    if profile in ("pi", "all"):
        checks += pi_checks(system, injection)
    if profile in ("build", "all"):
        checks += build_checks(system)
    return checks


def _version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])
