"""Issue 15, finding 9: temporaries a killed run left behind are removed by the next run there."""

import os
import subprocess
import sys
import time
from pathlib import Path

from imx500_picosam.atomic import write_json

PROJECT_ROOT = Path(__file__).resolve().parents[1]

KILLED_WRITE = '''
import os, sys
from pathlib import Path
from imx500_picosam.atomic import atomic_path, atomic_directory
folder = Path(sys.argv[1])
if sys.argv[2] == "file":
    with atomic_path(folder / "model.weights.h5", suffix=".weights.h5") as tmp:
        tmp.write_bytes(b"x" * 100000)
        os._exit(9)
with atomic_directory(folder / "firmware") as work:
    (work / "network.rpk").write_bytes(b"x" * 1000)
    os._exit(9)
'''


def _killed_write(folder, kind):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    before = set(folder.iterdir())
    subprocess.run([sys.executable, "-c", KILLED_WRITE, str(folder), kind], env=env, check=False, timeout=60)
    left = [p for p in set(folder.iterdir()) - before if ".tmp" in p.name]
    assert len(left) == 1, left
    return left[0]


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_killed_runs_temporaries_are_swept_by_the_next_write_there(tmp_path):
    file_left = _killed_write(tmp_path, "file")
    folder_left = _killed_write(tmp_path, "folder")
    for path in (file_left, folder_left):
        _age(path, 120)  # the writer is gone and a minute has passed
    foreign = [tmp_path / ".notes.txt.tmp", tmp_path / "data.abcdefgh.tmp", tmp_path / ".x.picosam.tmp"]
    for path in foreign:
        path.write_text("not ours")
        _age(path, 10 * 86400)
    write_json(tmp_path / "report.json", {})
    assert not file_left.exists() and not folder_left.exists()
    assert all(path.exists() for path in foreign)


def test_recent_or_live_writers_temporaries_are_kept(tmp_path):
    recent = _killed_write(tmp_path, "file")  # writer gone, but only seconds ago
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".other.json.picosam{sleeper.pid}.abcd1234.tmp"
        live.write_text("{}")
        _age(live, 600)  # ten minutes old, its writer still running
        legacy_recent = tmp_path / ".old.json.wxyz5678.tmp"
        legacy_recent.write_text("{}")
        legacy_old = tmp_path / ".older.json.qrst9012.tmp.json"
        legacy_old.write_text("{}")
        _age(legacy_old, 2 * 3600)  # the naming before this change, over an hour old
        write_json(tmp_path / "report.json", {})
        assert recent.exists() and live.exists() and legacy_recent.exists()
        assert not legacy_old.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
