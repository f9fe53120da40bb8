"""One run per output folder: `train`, `teacher cache` and `build` refuse a folder another run
holds, in one line naming the holder; a lock left by a killed run is taken over with a word."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from imx500_picosam.cli import main
from imx500_picosam.errors import PicosamError
from imx500_picosam.lock import LOCK_NAME, FolderLock

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_a_second_holder_is_refused_in_one_line_naming_the_first(tmp_path):
    with FolderLock(tmp_path / "run", "picosam train"):
        with pytest.raises(PicosamError) as refused:
            FolderLock(tmp_path / "run", "picosam train").acquire()
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"{tmp_path / 'run'}: in use by picosam train (pid {os.getpid()}, started ")
        # Shards of one teacher cache take their own locks and run side by side.
        with FolderLock(tmp_path / "run", "shard", name=".picosam-shard-1-of-2.lock"):
            pass
    # A clean end removes the lock file: the folder holds only what the run wrote.
    assert list((tmp_path / "run").iterdir()) == []
    with FolderLock(tmp_path / "run", "picosam train"):
        pass


def _killed_holder(folder: Path) -> int:
    """A process that takes the lock and is then SIGKILLed; returns its pid."""
    code = textwrap.dedent(f"""
        import sys, time
        from imx500_picosam.lock import FolderLock
        FolderLock({str(folder)!r}, "picosam train").acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(PicosamError, match=f"in use by picosam train \\(pid {holder.pid}, started"):
        FolderLock(folder, "picosam train").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    assert (folder / LOCK_NAME).is_file()  # a killed run cleans nothing up
    return holder.pid


def test_the_lock_of_a_killed_run_is_taken_over_with_a_message(tmp_path):
    pid = _killed_holder(tmp_path / "run")
    notices = []
    with FolderLock(tmp_path / "run", "picosam train", notice=notices.append) as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert len(notices) == 1
    assert notices[0].startswith(f"{tmp_path / 'run'}: taking over the lock of picosam train (pid {pid}, started ")
    assert notices[0].endswith("which is no longer running")


def _refused(args, folder: Path) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # a one-line error, no traceback
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {folder}: in use by the first run (pid {os.getpid()}, started ")
    return lines[0]


def test_train_teacher_cache_and_build_refuse_a_folder_in_use(coco_subset, tmp_path):
    annotations, images = coco_subset / "annotations.json", coco_subset / "images"
    folder = tmp_path / "busy"
    with FolderLock(folder, "the first run"):
        _refused(["train", "--annotations", annotations, "--images", images, "--max-images", 1, "--mode",
                  "supervised", "--steps", 1, "--batch-size", 1, "--out", folder], folder)
        _refused(["teacher", "cache", "--annotations", annotations, "--images", images, "--max-images", 1,
                  "--teacher", tmp_path / "no-teacher-needed", "--out", folder], folder)
        _refused(["build", "--checkpoint", tmp_path / "not-read.weights.h5", "--build", folder], folder)
    # Nothing was written beside the holder's files.
    assert sorted(p.name for p in folder.iterdir()) == []
