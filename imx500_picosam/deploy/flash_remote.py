"""The half of ``picosam flash`` that runs on the Raspberry Pi.

``picosam flash`` copies the firmware, its build report and this project's pure-Python
modules (``imx500_picosam.deploy.flash.REMOTE_MODULES``: standard library only, plus picamera2
for the smoke test) to the Pi and runs ``python3 -m imx500_picosam.deploy.flash_remote`` there.
The Pi needs neither this project nor anything from PyPI installed.

Layout of the remote folder (``--remote-dir``, default ``~/picosam``)::

    current.rpk  -> firmware/<version>.rpk   what applications load; only ever a smoke-tested file
    previous.rpk -> firmware/<version>.rpk   the one current before it, for a quick rollback
    firmware/<version>.rpk, <version>.json    installed firmware and its record (report, smoke test)
    logs/<version>.log                        everything this step printed, libcamera's output included
    incoming/, staging/<version>/             transfers and unpacked bundles: removed when done, a
                                              failed run's staging after a day (packager log inside)

Steps: package ``packerOut.zip`` with ``imx500-package`` and embed ``network_intrinsics``
(``imx500_picosam.firmware.package.package_rpk``), or take a ready ``.rpk``; copy it to
``firmware/<version>.rpk`` under a temporary name; smoke-test that file on the sensor
(``imx500_picosam.deploy.smoke``); only if it passes, point ``previous.rpk`` at the old firmware
and ``current.rpk`` at the new one, each with one rename. Whatever fails, the new file is
removed and ``current.rpk`` is untouched. The outcome is printed as one line on stdout,
``RESULT_PREFIX`` followed by JSON; all else goes to stderr and the log.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fcntl
import json
import os
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

from ..atomic import atomic_path, replace_symlink, write_json
from ..errors import PicosamError, UserError
from ..firmware.package import PACKAGER, package_rpk, roi_rule_of_report, segmentation_intrinsics
from .smoke import DEFAULT_FRAMES, DEFAULT_UPLOAD_TIMEOUT_S, PICOSAM_OUTPUT_ELEMENTS, CameraNotDetected, run_smoke_test

RESULT_PREFIX = "picosam-flash-result "
CURRENT_LINK = "current.rpk"
PREVIOUS_LINK = "previous.rpk"
FIRMWARE_DIR = "firmware"
LOG_DIR = "logs"
INCOMING_DIR = "incoming"
STAGING_DIR = "staging"
LOCK_FILE = ".flash.lock"
DEFAULT_KEEP = 3

# What failed, by the step that was running; the host turns these into its one-line errors.
STAGE_KINDS = {
    "package": "packaging-failed",
    "install": "install-failed",
    "smoke": "smoke-failed",
    "switch": "install-failed",
}


class PackagerMissing(PicosamError):
    """imx500-package is not on this Pi's PATH."""


class FlashBusy(PicosamError):
    """Another flash holds this remote folder's lock."""


def prepare_firmware(payload: Path, work_dir: Path, inference_rate: float, roi_rule: str = "square") -> Path:
    """An RPK with intrinsics from ``payload``: packaged from packerOut.zip, or a ready .rpk.
    ``roi_rule`` is the model's (the build report's), which the intrinsics carry."""
    from firmware_packaging.rpk import read_rpk, write_with_intrinsics

    if payload.suffix == ".zip":
        try:
            result = package_rpk(payload, work_dir, inference_rate, roi_rule)
        except UserError:
            _show_packager_log(work_dir / f"{PACKAGER}.log")
            raise
        if result.rpk is None:
            raise PackagerMissing(
                f"{PACKAGER} is not installed (it ships in Raspberry Pi OS: sudo apt install imx500-tools)"
            )
        _say(f"packaged {payload.name} with {PACKAGER}; network_intrinsics {json.dumps(result.intrinsics)}")
        return result.rpk
    if payload.suffix == ".rpk":
        if read_rpk(payload).intrinsics is not None:
            _say(f"{payload.name} is a ready RPK with its own network_intrinsics; installing it as it is")
            return payload
        packaged = work_dir / "network.rpk"
        write_with_intrinsics(payload, packaged, segmentation_intrinsics(inference_rate, roi_rule))
        _say(f"{payload.name} had no network_intrinsics; embedded the segmentation ones")
        return packaged
    raise PicosamError(f"{payload}: expected packerOut.zip or a .rpk")


def _show_packager_log(log_path: Path) -> None:
    if log_path.is_file():
        print(f"--- {log_path.name} ---", file=sys.stderr)
        print(log_path.read_text(errors="replace").rstrip("\n"), file=sys.stderr)
        print(f"--- end of {log_path.name} ---", file=sys.stderr, flush=True)


def install_versioned(rpk: Path, root: Path, version: str) -> Path:
    """Copy ``rpk`` to ``firmware/<version>.rpk``; a partial copy never bears that name."""
    from firmware_packaging.rpk import read_rpk

    target = root / FIRMWARE_DIR / f"{version}.rpk"
    if target.exists():
        raise PicosamError(f"{target} already exists; a version is never overwritten")
    with atomic_path(target, suffix=".rpk") as tmp:
        shutil.copyfile(rpk, tmp)
        read_rpk(tmp)
    return target


def switch_current(root: Path, installed: Path) -> Optional[str]:
    """Make ``installed`` current; the former current becomes previous. Returns its target."""
    current = root / CURRENT_LINK
    former = link_target(current)
    if former is not None and former != _relative(installed, root):
        replace_symlink(root / PREVIOUS_LINK, former)
    replace_symlink(current, _relative(installed, root))
    return former


def link_target(link: Path) -> Optional[str]:
    return os.readlink(link) if link.is_symlink() else None


def prune(root: Path, keep: int) -> list:
    """Remove all but the newest ``keep`` versions; current and previous always stay."""
    protected = {link_target(root / CURRENT_LINK), link_target(root / PREVIOUS_LINK)}
    versions = sorted((root / FIRMWARE_DIR).glob("picosam-*.rpk"))  # names start with a UTC timestamp
    removed = []
    for old in versions[: max(0, len(versions) - keep)]:
        if _relative(old, root) in protected:
            continue
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)
        removed.append(old.name)
    return removed


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _say(message: str) -> None:
    stamp = _dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stderr_copied_to(log_path: Path) -> Iterator[None]:
    """Everything written to file descriptor 2 — ours, the packager's, libcamera's — also goes to the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    log = open(log_path, "ab")

    def pump() -> None:
        passing_on = True
        while True:
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            if passing_on:
                try:
                    os.write(original, chunk)
                except OSError:  # the SSH session is gone; keep logging
                    passing_on = False
            log.write(chunk)
            log.flush()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # drops our last write end of the pipe: the pump sees end of file
        thread.join(timeout=10)  # a child still holding the pipe (a progress bar) must not hang us
        os.close(original)
        if not thread.is_alive():
            os.close(read_end)
            log.close()


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    with open(root / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FlashBusy(f"another picosam flash is running in {root} (lock {root / LOCK_FILE})") from None
        yield


def flash_here(args: argparse.Namespace) -> Dict[str, Any]:
    """Package, install, smoke-test and switch; returns the result the host records."""
    root = Path(args.root)
    result: Dict[str, Any] = {
        "status": "failed", "kind": None, "error": None, "version": args.version,
        "installed": None, "current": link_target(root / CURRENT_LINK), "previous": None,
        "smoke": None, "intrinsics": None, "pruned": [],
        "log": str(root / LOG_DIR / f"{args.version}.log"),
    }
    stage, installed = "package", None
    try:
        with exclusive(root):
            work_dir = Path(args.work_dir)
            rule = roi_rule_of_report(Path(args.report)) if args.report else None
            rpk = prepare_firmware(Path(args.payload), work_dir, args.inference_rate, rule or "square")
            from firmware_packaging.rpk import read_rpk

            result["intrinsics"] = read_rpk(rpk).intrinsics
            stage = "install"
            installed = install_versioned(rpk, root, args.version)
            _say(f"installed {_relative(installed, root)}; smoke test: {args.frames} frames on the sensor")
            stage = "smoke"
            summary = run_smoke_test(installed, frames=args.frames, expected_elements=args.expected_elements,
                                     upload_timeout=args.upload_timeout)
            result["smoke"] = summary.as_dict()
            print("smoke test summary " + json.dumps(summary.as_dict()), file=sys.stderr, flush=True)
            if not summary.passed:
                raise PicosamError(summary.reason)
            stage = "switch"
            write_json(installed.with_suffix(".json"), _record(args, result))
            result["previous"] = switch_current(root, installed)
            result["current"] = link_target(root / CURRENT_LINK)
            result["installed"] = result["current"]
            installed = None  # current now: never removed below
            result["pruned"] = prune(root, args.keep)
            result.update(status="passed")
            _say(f"{CURRENT_LINK} -> {result['current']} (previous: {result['previous'] or 'none'})")
    except CameraNotDetected as err:
        result.update(kind="camera-not-detected", error=str(err))
    except PackagerMissing as err:
        result.update(kind="packager-missing", error=str(err))
    except FlashBusy as err:
        result.update(kind="busy", error=str(err))
    except (UserError, OSError) as err:
        result.update(kind=STAGE_KINDS[stage], error=str(err))
    except Exception as err:  # a bug must still leave current.rpk alone and report one line
        traceback.print_exc()
        result.update(kind="internal", error=f"{type(err).__name__}: {err}")
    finally:
        if installed is not None and installed.exists():
            installed.unlink()
            installed.with_suffix(".json").unlink(missing_ok=True)
            _say(f"removed {_relative(installed, root)}; {CURRENT_LINK} still -> {result['current'] or 'nothing'}")
    if result["status"] != "passed":
        _say(f"FAILED ({result['kind']}): {result['error']}")
    return result


def _record(args: argparse.Namespace, result: Dict[str, Any]) -> Dict[str, Any]:
    report = None
    if args.report and Path(args.report).is_file():
        try:
            report = json.loads(Path(args.report).read_text())
        except ValueError:
            report = None
    return {
        "version": args.version,
        "installed_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"file": Path(args.payload).name, "sha256": args.source_sha256},
        "intrinsics": result["intrinsics"],
        "smoke": result["smoke"],
        "build_report": report,
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m imx500_picosam.deploy.flash_remote",
                                     description="Install firmware on this Pi (run by `picosam flash`).")
    parser.add_argument("--root", required=True, help="absolute path of the remote folder")
    parser.add_argument("--version", required=True)
    parser.add_argument("--payload", required=True, help="packerOut.zip or a .rpk")
    parser.add_argument("--work-dir", required=True, help="scratch folder for packaging")
    parser.add_argument("--report", default=None)
    parser.add_argument("--source-sha256", default=None)
    parser.add_argument("--inference-rate", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--expected-elements", type=int, default=PICOSAM_OUTPUT_ELEMENTS)
    parser.add_argument("--upload-timeout", type=float, default=DEFAULT_UPLOAD_TIMEOUT_S)
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with stderr_copied_to(Path(args.root) / LOG_DIR / f"{args.version}.log"):
        result = flash_here(args)
    try:
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    except BrokenPipeError:  # the host went away; the log and the links tell the story
        pass
    return 0 if result["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
