"""`picosam flash` / `make flash` against a real OpenSSH server on 127.0.0.1 (tests/loopback_pi.py).

Real here: ssh, scp, sshd, host-key checking, key authentication, the remote shell, the
transfer and its checksum, the remote installer and smoke test, the symlink switch, the
build report. Test doubles, on the "Pi" only: imx500-package and picamera2 (the camera).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import FAKES, PROJECT_ROOT, RPK_FIXTURES
from firmware_packaging.rpk import read_rpk
from imx500_picosam.deploy import flash_remote
from imx500_picosam.atomic import replace_symlink
from imx500_picosam.errors import PicosamError, RpkError
from imx500_picosam.deploy.flash import REMOTE_MODULES, plan_flash
from loopback_pi import SSHD, CuttingProxy, LoopbackPi, free_port, keygen, public_key

pytestmark = pytest.mark.skipif(
    SSHD is None or shutil.which("ssh") is None or shutil.which("scp") is None,
    reason="OpenSSH server and client are needed (apt install openssh-server openssh-client; .ci/run installs them)",
)

VENDOR_RPK = RPK_FIXTURES / "imx500_network_inputtensoronly.rpk"
DEEPLAB_RPK = RPK_FIXTURES / "imx500_network_deeplabv3plus.rpk"
SEGMENTATION_30 = {"task": "segmentation", "inference_rate": 30, "input_aspect_ratio": {"width": 1, "height": 1}}


@pytest.fixture
def pi(tmp_path):
    if not VENDOR_RPK.is_file():
        pytest.skip(f"vendor RPK fixtures not found at {RPK_FIXTURES}")
    loopback = LoopbackPi(tmp_path / "pi")
    loopback.start()
    yield loopback
    loopback.stop()


def make_build(folder: Path, padding: int = 0) -> Path:
    """A build folder as `make rpk` leaves it on x86: packerOut.zip and build_report.json."""
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "packerOut.zip", "w") as archive:
        for name in ("dnnParams.xml", "manifest.json", "verTable.txt"):
            archive.writestr(name, b"x")
        archive.writestr("l2staticData.bin", os.urandom(padding) or b"x")
    report = {"report_format": 1, "model": {"architecture": "picosam3"},
              "converter": {"output_tensors": [{"shape": [96, 96, 1]}]}}
    (folder / "build_report.json").write_text(json.dumps(report))
    return folder


@pytest.fixture
def build(tmp_path):
    return make_build(tmp_path / "build")


def run_flash(pi, *args, port=None):
    return subprocess.run([sys.executable, "-m", "imx500_picosam", "flash", *pi.flash_args(port), *args],
                          capture_output=True, text=True, timeout=300)


def error_line(completed) -> str:
    lines = completed.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def report_of(build: Path) -> dict:
    return json.loads((build / "build_report.json").read_text())


def test_make_flash_packages_on_the_pi_smoke_tests_and_switches_current(pi, build):
    completed = subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_ROOT), "flash", f"PI={pi.destination}",
         f"PI_PORT={pi.port}", f"PI_IDENTITY={pi.client_key}", f"PI_KNOWN_HOSTS={pi.known_hosts}",
         f"PI_DIR={pi.remote_dir}", f"BUILD={build}", f"VENV={sys.prefix}", f"FLASH_ARGS=--remote-python {pi.python}"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    current = pi.current()
    assert current.startswith("firmware/picosam-") and current.endswith(".rpk")
    installed = read_rpk(pi.remote_dir / current)
    vendor = read_rpk(VENDOR_RPK)
    assert installed.intrinsics == SEGMENTATION_30  # packaged on the Pi, intrinsics embedded there
    assert (pi.remote_dir / current).read_bytes()[: installed.cpio_offset] == VENDOR_RPK.read_bytes()[: vendor.cpio_offset]
    assert pi.leftovers() == {"incoming": [], "staging": []}
    assert not (pi.remote_dir / "previous.rpk").is_symlink()

    report = report_of(build)
    assert report["model"] == {"architecture": "picosam3"}  # the build's own sections are kept
    flashed = report["flash"]
    assert flashed["status"] == "passed" and flashed["current"] == current and flashed["packaged_on_pi"]
    smoke = flashed["smoke_test"]
    assert smoke["passed"] and smoke["frames"] == 30 and smoke["tensors_received"] == 30
    assert smoke["expected_elements"] == 96 * 96 and smoke["output_shapes"] == [[96, 96, 1]]
    assert smoke["dnn_ms_median"] == 8.5 and smoke["dnn_ms_p95"] == 9.0  # the fake sensor's KPI: 8.0..9.0 ms
    assert smoke["firmware_load_seconds"] > 0
    assert smoke["roi"] == [508, 0, 3040, 3040]
    record = json.loads((pi.remote_dir / current).with_suffix(".json").read_text())
    assert record["smoke"] == smoke and record["build_report"]["model"] == {"architecture": "picosam3"}
    assert Path(flashed["pi_log"]).is_file() and "smoke test summary" in Path(flashed["pi_log"]).read_text()
    assert f"current.rpk  -> {current}" in completed.stdout
    assert "127.0.0.1" not in json.dumps(flashed)  # reports travel as CI artifacts: no host names


def test_ready_rpks_are_installed_and_the_last_good_one_kept(pi, tmp_path):
    empty_build = tmp_path / "no-build"
    empty_build.mkdir()
    first = run_flash(pi, "--build", str(empty_build), "--firmware", str(VENDOR_RPK), "--inference-rate", "15")
    assert first.returncode == 0, first.stderr
    first_current = pi.current()
    assert read_rpk(pi.remote_dir / first_current).intrinsics["inference_rate"] == 15  # it had none: embedded

    second = run_flash(pi, "--build", str(empty_build), "--firmware", str(DEEPLAB_RPK))
    assert second.returncode == 0, second.stderr
    assert pi.current() != first_current
    assert os.readlink(pi.remote_dir / "previous.rpk") == first_current
    assert (pi.remote_dir / pi.current()).read_bytes() == DEEPLAB_RPK.read_bytes()  # its own intrinsics kept
    assert "report" not in second.stdout  # no build report to update


def test_packaging_failure_shows_the_pi_log_and_installs_nothing(pi, build):
    pi.start(FAKE_PACKAGER_FAIL="1")
    completed = run_flash(pi, "--build", str(build))
    assert completed.returncode == 1
    line = error_line(completed)
    assert line.startswith(f"Error: packaging failed on {pi.destination}: imx500-package failed")
    assert "firmware signing error" in line and "no firmware was current, none is now" in line
    assert "pi| Packaging failed: firmware signing error" in completed.stderr  # the Pi's log, shown as it ran
    assert pi.current() is None and pi.installed() == []
    packager_log = Path(line.split("(log: ", 1)[1].split(")", 1)[0])
    assert packager_log.read_text().strip() == "Packaging failed: firmware signing error"  # kept for a look
    assert pi.leftovers()["incoming"] == [] and len(pi.leftovers()["staging"]) == 1
    assert report_of(build)["flash"]["status"] == "failed"


def test_packager_missing_on_the_pi_is_reported_before_any_transfer(pi, build):
    pi.start(packager=False)
    completed = run_flash(pi, "--build", str(build))
    assert completed.returncode == 1
    assert error_line(completed).startswith(f"Error: imx500-package is not installed on {pi.destination}")
    assert "sudo apt install imx500-tools" in error_line(completed)
    assert pi.leftovers() == {"incoming": [], "staging": []} and pi.installed() == []


def test_smoke_test_failure_keeps_the_previous_firmware_current(pi, build):
    assert run_flash(pi, "--build", str(build)).returncode == 0
    good = pi.current()
    pi.start(FAKE_CAMERA="sparse")  # output tensors on one frame in four

    completed = run_flash(pi, "--build", str(build))
    assert completed.returncode == 1
    line = error_line(completed)
    assert line.startswith(f"Error: smoke test failed on {pi.destination}: 7 of 30 frames had a 9216-element output tensor (need 15")
    assert f"current.rpk still -> {good}" in line and "Pi log:" in line
    assert "pi| smoke test summary {" in completed.stderr
    assert pi.current() == good
    assert pi.installed() == sorted([Path(good).name, Path(good).with_suffix(".json").name])
    flashed = report_of(build)["flash"]
    assert flashed["status"] == "failed" and flashed["current"] == good
    assert flashed["smoke_test"]["tensors_received"] == 7 and not flashed["smoke_test"]["passed"]


def test_camera_not_detected(pi, build):
    pi.start(FAKE_CAMERA="absent")
    completed = run_flash(pi, "--build", str(build))
    assert completed.returncode == 1
    line = error_line(completed)
    assert line.startswith(f"Error: camera not detected on {pi.destination}: no IMX500 among the cameras")
    assert pi.current() is None and pi.installed() == []


def test_a_transfer_cut_once_is_retried(pi, tmp_path):
    build = make_build(tmp_path / "build", padding=1 << 20)
    proxy = CuttingProxy(pi.port, cut_after=256 * 1024, cuts=1)
    pi.trust(proxy.port)
    completed = run_flash(pi, "--build", str(build), port=proxy.port)
    proxy.close()
    assert completed.returncode == 0, completed.stderr
    assert proxy.cut_count == 1
    assert "attempt 1 failed" in completed.stderr and "attempt 2 of 3" in completed.stderr
    assert pi.current() is not None and pi.leftovers() == {"incoming": [], "staging": []}


def test_a_connection_dropped_mid_transfer_installs_nothing_and_a_rerun_succeeds(pi, tmp_path):
    build = make_build(tmp_path / "build", padding=1 << 20)
    proxy = CuttingProxy(pi.port, cut_after=256 * 1024, cuts=None)  # every transfer dies part way
    pi.trust(proxy.port)
    completed = run_flash(pi, "--build", str(build), "--retries", "2", port=proxy.port)
    proxy.close()
    assert completed.returncode == 1
    line = error_line(completed)
    assert line.startswith(f"Error: transfer to {pi.destination} failed 2 times")
    assert "nothing was installed and current.rpk is unchanged" in line
    assert proxy.cut_count == 2
    assert pi.current() is None and pi.installed() == []
    incoming = pi.leftovers()["incoming"]
    assert all(name.endswith(".part") for name in incoming)  # never a whole-looking partial file
    assert pi.leftovers()["staging"] == []

    rerun = run_flash(pi, "--build", str(build))
    assert rerun.returncode == 0, rerun.stderr
    assert pi.current() is not None and report_of(build)["flash"]["status"] == "passed"


@pytest.mark.parametrize("problem", ["unknown host key", "changed host key", "wrong key", "nothing listening"])
def test_connection_problems_are_one_line_errors(pi, build, tmp_path, problem):
    args, port = [], None
    if problem == "unknown host key":
        pi.known_hosts.write_text("")
        expected = f"host key of 127.0.0.1 port {pi.port} is not in {pi.known_hosts}: refusing an unknown host"
    elif problem == "changed host key":
        impostor = keygen(tmp_path / "impostor_key")
        pi.known_hosts.write_text(f"[127.0.0.1]:{pi.port} {public_key(impostor)}\n")
        expected = f"host key of 127.0.0.1 port {pi.port} does not match {pi.known_hosts}: refusing to connect"
    elif problem == "wrong key":
        args = ["--identity", str(keygen(tmp_path / "stranger_key"))]
        expected = f"{pi.destination} refused authentication ("
    else:
        port = free_port()
        expected = f"cannot reach 127.0.0.1 port {port} while connecting: "
    completed = run_flash(pi, "--build", str(build), *args, port=port)
    assert completed.returncode == 1
    assert error_line(completed).startswith("Error: " + expected), completed.stderr
    assert not pi.remote_dir.exists()  # refused before anything touched the Pi
    assert "flash" not in report_of(build)


@pytest.mark.parametrize("kwargs, message", [
    ({"destination": "raspberrypi"}, "expected USER@HOST"),
    ({"identity": Path("/nonexistent/key")}, "/nonexistent/key: --identity file not found"),
    ({"remote_dir": "pi cam"}, "--remote-dir 'pi cam': use letters"),
    ({"remote_dir": "~other/x"}, "--remote-dir '~other/x'"),
    ({"firmware": Path("/nonexistent/network.rpk")}, "/nonexistent/network.rpk: firmware file not found"),
])
def test_bad_options_are_refused_before_connecting(build, kwargs, message):
    options = {"destination": "pi@raspberrypi.local", "build_dir": build, **kwargs}
    with pytest.raises(PicosamError, match=message.replace("(", r"\(")):
        plan_flash(options.pop("destination"), **options)


def test_a_build_without_firmware_is_refused(tmp_path):
    with pytest.raises(PicosamError, match="neither packerOut.zip nor network.rpk found"):
        plan_flash("pi@raspberrypi.local", build_dir=tmp_path)


def test_remote_modules_are_all_that_exist(tmp_path):
    for package, names in REMOTE_MODULES.items():
        for name in names:
            assert (PROJECT_ROOT / package / name).is_file()


# The Pi side's pieces, on their own.

def test_switch_keeps_previous_and_prune_never_removes_current_or_previous(tmp_path):
    root = tmp_path / "picosam"
    (root / "firmware").mkdir(parents=True)
    versions = [root / "firmware" / f"picosam-2026010{day}T000000.000Z-abc.rpk" for day in range(1, 6)]
    for path in versions:
        shutil.copyfile(VENDOR_RPK, path) if VENDOR_RPK.is_file() else path.write_bytes(b"9464")
    assert flash_remote.switch_current(root, versions[0]) is None
    assert flash_remote.switch_current(root, versions[1]) == "firmware/" + versions[0].name
    assert os.readlink(root / "previous.rpk") == "firmware/" + versions[0].name
    assert os.readlink(root / "current.rpk") == "firmware/" + versions[1].name
    assert flash_remote.prune(root, keep=3) == []  # the two beyond the newest three are previous and current
    removed = flash_remote.prune(root, keep=1)
    assert sorted(removed) == sorted(p.name for p in versions[2:4])
    assert sorted(p.name for p in (root / "firmware").iterdir()) == sorted(p.name for p in (versions[0], versions[1], versions[4]))


def test_replace_symlink_refuses_a_regular_file(tmp_path):
    (tmp_path / "current.rpk").write_bytes(b"user's own file")
    with pytest.raises(FileExistsError):
        replace_symlink(tmp_path / "current.rpk", "firmware/x.rpk")
    assert (tmp_path / "current.rpk").read_bytes() == b"user's own file"


# The smoke test on the fake camera, in this process.

@pytest.fixture
def fake_camera(monkeypatch):
    if not VENDOR_RPK.is_file():
        pytest.skip(f"vendor RPK fixtures not found at {RPK_FIXTURES}")
    monkeypatch.syspath_prepend(str(FAKES))
    for name in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        monkeypatch.delitem(sys.modules, name)
    yield lambda mode: monkeypatch.setenv("FAKE_CAMERA", mode)
    for name in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        del sys.modules[name]


def test_smoke_summary_figures(fake_camera):
    from imx500_picosam.deploy.smoke import run_smoke_test

    summary = run_smoke_test(VENDOR_RPK, frames=20)
    assert summary.passed and summary.tensors_received == 20 and summary.required == 10
    assert summary.kpi_frames == 20
    # The fake sensor reports 8000 + 250 * (frame % 5) microseconds; frames 5..24 follow the first tensor.
    runtimes = [(8000 + 250 * (frame % 5)) / 1000 for frame in range(5, 25)]
    assert summary.dnn_ms_median == statistics.median(runtimes)
    assert summary.dnn_ms_p95 == sorted(runtimes)[18]  # nearest rank: ceil(0.95 * 20) = 19th value


def test_smoke_wrong_output_shape_fails(fake_camera):
    from imx500_picosam.deploy.smoke import run_smoke_test

    fake_camera("wrong-shape")
    summary = run_smoke_test(VENDOR_RPK, frames=10)
    assert not summary.passed and summary.tensors_received == 0 and summary.output_shapes == [[10]]
    assert summary.reason.startswith("0 of 10 frames had a 9216-element output tensor")


def test_smoke_firmware_that_never_runs_times_out(fake_camera):
    from imx500_picosam.deploy.smoke import run_smoke_test

    fake_camera("no-network")
    summary = run_smoke_test(VENDOR_RPK, frames=10, upload_timeout=0.3)
    assert not summary.passed and summary.firmware_load_seconds is None
    assert summary.reason.startswith("no output tensor within 0.3 s")


def test_smoke_refuses_a_file_that_is_not_an_rpk(fake_camera, tmp_path):
    from imx500_picosam.deploy.smoke import run_smoke_test

    bogus = tmp_path / "network.rpk"
    bogus.write_bytes(b"PK\x03\x04 not a package")
    with pytest.raises(RpkError, match="network.rpk: is a zip archive, not an IMX500 network package"):
        run_smoke_test(bogus)


def test_nearest_rank_percentile():
    from imx500_picosam.deploy.smoke import nearest_rank_percentile

    assert nearest_rank_percentile(list(range(1, 101)), 95) == 95
    assert nearest_rank_percentile([5.0], 95) == 5.0
    assert nearest_rank_percentile([3, 1, 2], 50) == 2


def test_a_firmware_from_elsewhere_does_not_take_the_build_report(build, tmp_path):
    elsewhere = tmp_path / "elsewhere.zip"
    shutil.copyfile(build / "packerOut.zip", elsewhere)
    assert plan_flash("pi@raspberrypi.local", build_dir=build, firmware=elsewhere).report is None
    assert plan_flash("pi@raspberrypi.local", build_dir=build).report == build / "build_report.json"


def test_a_second_flash_on_the_same_pi_waits_its_turn(tmp_path):
    with flash_remote.exclusive(tmp_path):
        with pytest.raises(flash_remote.FlashBusy, match="another picosam flash is running"):
            with flash_remote.exclusive(tmp_path):
                pass
    with flash_remote.exclusive(tmp_path):  # released
        pass
