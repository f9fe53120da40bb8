"""``picosam flash``: deploy a build to a Raspberry Pi AI Camera over SSH and keep the last good firmware.

This is the host side. It drives OpenSSH's own ``ssh`` and ``scp`` (so the user's
``~/.ssh/config``, agent and jump hosts keep working) with host-key checking forced on,
batch mode (never a password prompt), a connect timeout and keepalives. Four steps:

1. probe: create the remote folders, check for the Pi's Python and ``imx500-package``,
   read where ``current.rpk`` points;
2. transfer: one tar — the firmware, its build report and the modules in
   :data:`REMOTE_MODULES` — to ``incoming/NAME.part``; the Pi checks its sha256 and only
   then renames it; a dropped connection is retried, and an abandoned ``.part`` is never
   mistaken for a whole file;
3. install: unpack it and run :mod:`imx500_picosam.deploy.flash_remote` on the Pi (package,
   intrinsics, versioned install, smoke test, then the ``current.rpk`` switch), its
   output shown here as it happens (a failed run leaves ``staging/<version>`` for a look);
4. record: the outcome and the smoke-test summary go into ``build_report.json`` under
   ``"flash"`` (no host name: reports travel as CI artifacts).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import flash_remote
from ..atomic import write_json
from ..errors import PicosamError
from ..hashing import sha256_of
from .smoke import DEFAULT_FRAMES, PICOSAM_OUTPUT_ELEMENTS

# What the Pi needs to run flash_remote: standard library only (plus picamera2 there).
REMOTE_MODULES: Dict[str, Tuple[str, ...]] = {
    "imx500_picosam": ("__init__.py", "errors.py", "atomic.py", "extras.py", "firmware/__init__.py", "firmware/package.py",
                       "deploy/__init__.py", "deploy/smoke.py", "deploy/flash_remote.py"),
    "firmware_packaging": ("__init__.py", "cpio.py", "errors.py", "files.py", "rpk.py"),
}
DEFAULT_REMOTE_DIR = "~/picosam"
DEFAULT_RETRIES = 3
DEFAULT_CONNECT_TIMEOUT_S = 10
RETRY_DELAY_S = 1.0  # doubled after each failed attempt
PROBE_TIMEOUT_S = 60
TRANSFER_TIMEOUT_S = 900
INSTALL_TIMEOUT_S = 1800  # packaging plus a first firmware upload plus the smoke test
SSH_FAILED = 255  # ssh's own exit status when the connection, not the command, failed
# Remote paths are written into shell commands and scp targets: keep them plain.
_PLAIN_REMOTE_PATH = re.compile(r"^[A-Za-z0-9._/~+-]+$")
_DESTINATION = re.compile(r"^(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@(?P<host>[A-Za-z0-9._:%-]+)$")

Echo = Callable[[str], None]


def _stderr_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class SshFailure(PicosamError):
    """The connection, not the remote command, failed; ``kind`` says how."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SshTarget:
    """A Pi reachable with OpenSSH, and the options every connection to it uses."""

    user: str
    host: str
    port: int = 22
    identity: Optional[Path] = None
    known_hosts: Optional[Path] = None
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S

    @classmethod
    def parse(cls, destination: str, **options: Any) -> "SshTarget":
        match = _DESTINATION.match(destination)
        if not match:
            raise PicosamError(f"--host {destination!r}: expected USER@HOST, e.g. pi@raspberrypi.local")
        return cls(user=match["user"], host=match["host"], **options)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def known_hosts_name(self) -> str:
        return str(self.known_hosts) if self.known_hosts else "~/.ssh/known_hosts"

    def options(self) -> List[str]:
        options = [
            "-o", "BatchMode=yes",  # fail instead of asking for a password or a host-key decision
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "ServerAliveInterval=5",  # a silent link is declared dead after 3 missed answers
            "-o", "ServerAliveCountMax=3",
        ]
        if self.known_hosts:
            # The given file is the only authority on the Pi's key.
            options += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.identity:
            options += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return options

    def ssh(self, command: str) -> List[str]:
        return ["ssh", "-p", str(self.port), *self.options(), "--", self.destination, command]

    def scp(self, local: Path, remote_path: str) -> List[str]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return ["scp", "-q", "-P", str(self.port), *self.options(), "--", str(local),
                f"{self.user}@{host}:{remote_path}"]

    def failure(self, stderr: str, action: str) -> SshFailure:
        """The one-line error for a failed connection, from what ssh printed."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("@")]
        last = lines[-1] if lines else "no message from ssh"
        where = f"{self.host} port {self.port}"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "has changed and you have requested strict" in stderr:
            return SshFailure("host-key-mismatch", (
                f"host key of {where} does not match {self.known_hosts_name}: refusing to connect "
                "(if the Pi was reinstalled, check its new fingerprint, then replace its line)"))
        if "host key is known for" in stderr or "Host key verification failed" in stderr:
            return SshFailure("host-key-unknown", (
                f"host key of {where} is not in {self.known_hosts_name}: refusing an unknown host (check the Pi's "
                f"fingerprint, then add it: ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts_name})"))
        if "Permission denied" in stderr or "Too many authentication failures" in stderr:
            return SshFailure("auth", (
                f"{self.destination} refused authentication ({last}): check --identity and the Pi's "
                "~/.ssh/authorized_keys"))
        unreachable = ("Connection refused", "timed out", "No route to host", "Network is unreachable",
                       "Could not resolve hostname", "Name or service not known", "Temporary failure in name")
        if any(marker in stderr for marker in unreachable):
            return SshFailure("unreachable", f"cannot reach {where} while {action}: {last}")
        return SshFailure("dropped", f"connection to {where} lost while {action}: {last}")


@dataclass(frozen=True)
class FlashPlan:
    target: SshTarget
    firmware: Path  # packerOut.zip or .rpk
    report: Optional[Path]  # build_report.json to send and to update
    remote_dir: str
    remote_python: str = "python3"
    inference_rate: float = 30.0
    frames: int = DEFAULT_FRAMES
    retries: int = DEFAULT_RETRIES
    expected_elements: int = PICOSAM_OUTPUT_ELEMENTS

    @property
    def needs_packaging(self) -> bool:
        return self.firmware.suffix == ".zip"


@dataclass
class FlashOutcome:
    version: str
    result: Dict[str, Any]  # what flash_remote reported
    report: Optional[Path]
    transfer_attempts: int
    messages: List[str] = field(default_factory=list)


def plan_flash(
    destination: str,
    *,
    port: int = 22,
    identity: Optional[Path] = None,
    known_hosts: Optional[Path] = None,
    remote_dir: str = DEFAULT_REMOTE_DIR,
    build_dir: Path = Path("build"),
    firmware: Optional[Path] = None,
    remote_python: str = "python3",
    inference_rate: float = 30.0,
    frames: int = DEFAULT_FRAMES,
    retries: int = DEFAULT_RETRIES,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
) -> FlashPlan:
    """Check everything that can be checked on this machine; one-line errors name the file."""
    for tool in ("ssh", "scp"):
        if shutil.which(tool) is None:
            raise PicosamError(f"{tool} not found on this machine: install OpenSSH's client (apt install openssh-client)")
    for option, path in (("--identity", identity), ("--known-hosts", known_hosts)):
        if path is not None and not Path(path).is_file():
            raise PicosamError(f"{path}: {option} file not found")
    target = SshTarget.parse(destination, port=port, identity=identity, known_hosts=known_hosts,
                             connect_timeout=connect_timeout)
    for option, value in (("--remote-dir", remote_dir), ("--remote-python", remote_python)):
        _check_remote_path(option, value)
    build_dir = Path(build_dir)
    firmware = Path(firmware) if firmware is not None else _firmware_in(build_dir)
    _check_firmware(firmware)
    # The build's report describes this firmware only when the firmware is the build's own.
    report = build_dir / "build_report.json"
    same_build = firmware.resolve().parent == build_dir.resolve()
    report = report if report.is_file() and same_build else None
    return FlashPlan(
        target=target, firmware=firmware, report=report, remote_dir=remote_dir, remote_python=remote_python,
        inference_rate=inference_rate, frames=frames, retries=retries,
        expected_elements=expected_output_elements(_load_report(report)) if report else PICOSAM_OUTPUT_ELEMENTS,
    )


def _firmware_in(build_dir: Path) -> Path:
    for name in ("packerOut.zip", "network.rpk"):
        if (build_dir / name).is_file():
            return build_dir / name
    raise PicosamError(f"{build_dir}: neither packerOut.zip nor network.rpk found (run `make rpk` first, or --firmware F)")


def _check_firmware(firmware: Path) -> None:
    from firmware_packaging.rpk import read_rpk

    if not firmware.is_file():
        raise PicosamError(f"{firmware}: firmware file not found")
    if firmware.suffix == ".zip":
        if not zipfile.is_zipfile(firmware):
            raise PicosamError(f"{firmware}: not a zip file (expected the converter's packerOut.zip)")
    elif firmware.suffix == ".rpk":
        read_rpk(firmware)
    else:
        raise PicosamError(f"{firmware}: expected packerOut.zip or a .rpk")


def _check_remote_path(option: str, value: str) -> None:
    if not _PLAIN_REMOTE_PATH.match(value) or (value.startswith("~") and value != "~" and not value.startswith("~/")):
        raise PicosamError(f"{option} {value!r}: use letters, digits and ._+-/ only (~/ may start it)")


def _load_report(path: Path) -> Dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PicosamError(f"{path}: not a readable build report: {err}") from None
    if not isinstance(report, dict):
        raise PicosamError(f"{path}: not a build report (a JSON object)")
    return report


def expected_output_elements(report: Dict[str, Any]) -> int:
    """Elements of the network's first output tensor as the converter reported them."""
    try:
        shape = report["converter"]["output_tensors"][0]["shape"]
        return int(math.prod(int(n) for n in shape))
    except (KeyError, IndexError, TypeError, ValueError):
        return PICOSAM_OUTPUT_ELEMENTS


def _shell_path(path: str) -> str:
    """``path`` for a POSIX shell on the Pi, with a leading ~ meaning the login's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def version_name(firmware_sha256: str, now: Optional[_dt.datetime] = None) -> str:
    """``picosam-<UTC time to the millisecond>Z-<sha256 prefix>``: sorts by age, names its source."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"picosam-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{firmware_sha256[:12]}"


def flash(plan: FlashPlan, echo: Echo = _stderr_echo) -> FlashOutcome:
    """Deploy ``plan.firmware``; raises :class:`PicosamError` (one line) on any failure."""
    target = plan.target
    firmware_sha = sha256_of(plan.firmware)
    version = version_name(firmware_sha)
    echo(f"flash {plan.firmware} ({plan.firmware.stat().st_size:,} bytes) to {target.destination} as {version}")
    probe = _probe(plan)
    root = probe["root"]
    echo(f"[1/4] {target.destination}: {root}, current.rpk -> {probe.get('current') or 'nothing yet'}")
    with tempfile.TemporaryDirectory(prefix="picosam-flash.") as scratch:
        bundle = _write_bundle(plan, Path(scratch) / f"{version}.tar")
        attempts = _transfer(plan, bundle, f"{root}/{flash_remote.INCOMING_DIR}", echo)
    echo(f"[3/4] installing on {target.destination} (packaging: {'yes' if plan.needs_packaging else 'no'}, "
         f"smoke test: {plan.frames} frames)")
    result = _install(plan, root, version, bundle.name, firmware_sha, echo)
    outcome = FlashOutcome(version=version, result=result, report=plan.report, transfer_attempts=attempts)
    if plan.report is not None:
        record_in_report(plan.report, plan, firmware_sha, result)
        echo(f"[4/4] recorded in {plan.report}")
    if result["status"] != "passed":
        raise PicosamError(_failure_line(plan, result))
    return outcome


def _run(argv: List[str], timeout: float, target: SshTarget, action: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SshFailure("dropped", f"no answer from {target.host} port {target.port} within {timeout:g} s "
                                    f"while {action}") from None


def _probe(plan: FlashPlan) -> Dict[str, str]:
    target, layout = plan.target, flash_remote
    folders = " ".join(f"{_shell_path(plan.remote_dir)}/{name}" for name in
                       (layout.INCOMING_DIR, layout.STAGING_DIR, layout.FIRMWARE_DIR, layout.LOG_DIR))
    python = _shell_path(plan.remote_python)
    script = "; ".join([
        f"mkdir -p {folders} && cd {_shell_path(plan.remote_dir)} || exit 3",
        'echo "picosam-root=$(pwd -P)"',
        f"if command -v {python} >/dev/null 2>&1; then echo picosam-python=yes; else echo picosam-python=no; fi",
        "if command -v imx500-package >/dev/null 2>&1; then echo picosam-packager=yes; else echo picosam-packager=no; fi",
        f'if [ -L {layout.CURRENT_LINK} ]; then echo "picosam-current=$(readlink {layout.CURRENT_LINK})"; fi',
        # Transfers and unpacked bundles abandoned by a lost connection more than a day ago.
        f"find {layout.INCOMING_DIR} {layout.STAGING_DIR} -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {{}} + "
        "2>/dev/null; true",
    ])
    completed = _run(target.ssh(script), PROBE_TIMEOUT_S + target.connect_timeout, target, "connecting")
    if completed.returncode == SSH_FAILED:
        raise target.failure(completed.stderr, "connecting")
    facts = dict(line.split("=", 1) for line in completed.stdout.splitlines() if line.startswith("picosam-"))
    facts = {key[len("picosam-"):]: value for key, value in facts.items()}
    if completed.returncode != 0 or "root" not in facts:
        detail = completed.stderr.strip().splitlines()[-1:] or [f"exit {completed.returncode}"]
        raise PicosamError(f"{target.destination}: cannot create {plan.remote_dir}: {detail[0]}")
    if facts.get("python") != "yes":
        raise PicosamError(f"{plan.remote_python} not found on {target.destination}: the Pi needs Python 3 with "
                           "picamera2 (sudo apt install python3-picamera2), or name one with --remote-python")
    if plan.needs_packaging and facts.get("packager") != "yes":
        raise PicosamError(f"imx500-package is not installed on {target.destination}, so packerOut.zip cannot be "
                           "packaged there: sudo apt install imx500-tools (nothing was changed on the Pi)")
    return facts


def _write_bundle(plan: FlashPlan, path: Path) -> Path:
    """One tar: payload/ (firmware, report) and bundle/ (the remote code)."""
    import firmware_packaging
    import imx500_picosam

    sources = {"imx500_picosam": Path(imx500_picosam.__file__).parent,
               "firmware_packaging": Path(firmware_packaging.__file__).parent}
    payload_name = "packerOut.zip" if plan.needs_packaging else "network.rpk"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(plan.firmware, arcname=f"payload/{payload_name}", filter=_plain_member)
        if plan.report is not None:
            tar.add(plan.report, arcname="payload/build_report.json", filter=_plain_member)
        for package, names in REMOTE_MODULES.items():
            for name in names:
                tar.add(sources[package] / name, arcname=f"bundle/{package}/{name}", filter=_plain_member)
    return path


def _plain_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def _transfer(plan: FlashPlan, bundle: Path, incoming: str, echo: Echo) -> int:
    """Copy ``bundle`` to ``incoming/NAME``, whole and checked, or raise; returns the attempts used."""
    target = plan.target
    part = f"{incoming}/{bundle.name}.part"
    bundle_sha = sha256_of(bundle)
    verify = (f"cd {shlex.quote(incoming)} && printf '%s  %s\\n' {bundle_sha} {shlex.quote(bundle.name + '.part')} "
              f"| sha256sum -c --status - && mv -f {shlex.quote(bundle.name + '.part')} {shlex.quote(bundle.name)}")
    last: Optional[SshFailure] = None
    for attempt in range(1, plan.retries + 1):
        echo(f"[2/4] transferring {bundle.stat().st_size:,} bytes (attempt {attempt} of {plan.retries})")
        copied = _run(target.scp(bundle, part), TRANSFER_TIMEOUT_S, target, "transferring")
        if copied.returncode == 0:
            checked = _run(target.ssh(verify), PROBE_TIMEOUT_S + target.connect_timeout, target, "checking the transfer")
            if checked.returncode == 0:
                return attempt
            last = (target.failure(checked.stderr, "checking the transfer") if checked.returncode == SSH_FAILED
                    else SshFailure("checksum", f"the copy on the Pi does not match sha256 {bundle_sha[:12]}…"))
        else:
            last = target.failure(copied.stderr, "transferring")
        if last.kind in ("auth", "host-key-mismatch", "host-key-unknown"):
            raise last
        echo(f"      attempt {attempt} failed: {last}")
        if attempt < plan.retries:
            time.sleep(RETRY_DELAY_S * 2 ** (attempt - 1))
    raise PicosamError(f"transfer to {target.destination} failed {plan.retries} times ({last}); nothing was "
                       "installed and current.rpk is unchanged: run the command again")


def _install(plan: FlashPlan, root: str, version: str, bundle_name: str, firmware_sha: str, echo: Echo) -> Dict[str, Any]:
    layout = flash_remote
    staging = f"{root}/{layout.STAGING_DIR}/{version}"
    arguments = [
        "--root", root, "--version", version, "--payload", f"{staging}/payload/"
        + ("packerOut.zip" if plan.needs_packaging else "network.rpk"),
        "--work-dir", f"{staging}/work", "--source-sha256", firmware_sha,
        "--inference-rate", f"{plan.inference_rate:g}", "--frames", str(plan.frames),
        "--expected-elements", str(plan.expected_elements),
    ]
    if plan.report is not None:
        arguments += ["--report", f"{staging}/payload/build_report.json"]
    q = shlex.quote
    script = "\n".join([
        f"cd {q(root)} || exit 3",
        f"rm -rf {q(staging)} && mkdir -p {q(staging)}",
        f"tar -xf {q(layout.INCOMING_DIR + '/' + bundle_name)} -C {q(staging)} --no-same-owner || exit 3",
        f"rm -f {q(layout.INCOMING_DIR + '/' + bundle_name)}",
        f'cd {q(staging)}/bundle && PYTHONPATH="$PWD${{PYTHONPATH:+:$PYTHONPATH}}" '
        f"{_shell_path(plan.remote_python)} -m imx500_picosam.deploy.flash_remote {' '.join(map(q, arguments))}",
        "status=$?",
        # A failed run keeps its staging folder (packerOut.zip, packager log) for a look;
        # the next flash removes it after a day.
        f"if [ $status -eq 0 ]; then cd {q(root)} && rm -rf {q(staging)}; fi",
        "exit $status",
    ])
    returncode, stdout, stderr = _run_streaming(plan.target.ssh(script), INSTALL_TIMEOUT_S, echo)
    results = [line[len(layout.RESULT_PREFIX):] for line in stdout.splitlines() if line.startswith(layout.RESULT_PREFIX)]
    if results:
        return json.loads(results[-1])
    log = f"{root}/{layout.LOG_DIR}/{version}.log"
    if returncode == SSH_FAILED:
        failure = plan.target.failure(stderr, "installing")
        raise SshFailure(failure.kind, f"{failure}; current.rpk changes only after a passed smoke test, so it "
                                       f"is either the old or the new firmware (Pi log: {log})")
    raise PicosamError(f"the installer on {plan.target.destination} ended without a result (exit {returncode}); "
                       f"current.rpk is unchanged (Pi log: {log})")


def _run_streaming(argv: List[str], timeout: float, echo: Echo) -> Tuple[int, str, str]:
    """Run ``argv``; its stderr is shown line by line as it comes, its stdout collected."""
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr_lines: List[str] = []
    stdout_chunks: List[bytes] = []

    def relay() -> None:
        for raw in iter(process.stderr.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            stderr_lines.append(line)
            echo(f"  pi| {line}")

    readers = [threading.Thread(target=relay, daemon=True),
               threading.Thread(target=lambda: stdout_chunks.append(process.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for reader in readers:
        reader.join(timeout=10)
    stdout = b"".join(stdout_chunks).decode("utf-8", errors="replace")
    return process.returncode, stdout, "\n".join(stderr_lines)


FAILURE_LABELS = {
    "packager-missing": "packager missing on the Pi",
    "packaging-failed": "packaging failed",
    "camera-not-detected": "camera not detected",
    "smoke-failed": "smoke test failed",
    "install-failed": "install failed",
    "busy": "Pi busy",
    "internal": "installer error",
}


def _failure_line(plan: FlashPlan, result: Dict[str, Any]) -> str:
    label = FAILURE_LABELS.get(result.get("kind"), "flash failed")
    current = result.get("current")
    kept = f"current.rpk still -> {current}" if current else "no firmware was current, none is now"
    return f"{label} on {plan.target.destination}: {result.get('error')}; {kept} (Pi log: {result.get('log')})"


def record_in_report(report_path: Path, plan: FlashPlan, firmware_sha: str, result: Dict[str, Any]) -> None:
    """Add the outcome under ``"flash"``, rewriting the report atomically."""
    report = _load_report(report_path)
    report["flash"] = {
        "status": result["status"],
        "flashed_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "firmware": str(plan.firmware),
        "firmware_sha256": firmware_sha,
        "packaged_on_pi": plan.needs_packaging,
        "version": result["version"],
        "remote_dir": plan.remote_dir,
        "current": result["current"],
        "previous": result["previous"],
        "error": result["error"],
        "smoke_test": result["smoke"],
        "intrinsics": result["intrinsics"],
        "pi_log": result["log"],
    }
    write_json(report_path, report)


def summary_lines(outcome: FlashOutcome) -> List[str]:
    result, smoke = outcome.result, outcome.result.get("smoke") or {}
    lines = [f"current.rpk  -> {result['current']} (previous: {result['previous'] or 'none'})"]
    if smoke:
        lines.append(
            f"smoke test   {smoke['tensors_received']} of {smoke['frames']} frames with a "
            f"{smoke['expected_elements']}-element output; DNN {_ms(smoke['dnn_ms_median'])} median, "
            f"{_ms(smoke['dnn_ms_p95'])} p95; firmware load {smoke['firmware_load_seconds']} s"
        )
    if outcome.report is not None:
        lines.append(f"report       {outcome.report}")
    return lines


def _ms(value: Optional[float]) -> str:
    return "n/a (no KPI)" if value is None else f"{value:g} ms"
