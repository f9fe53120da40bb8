"""Issue 15, finding 3: a save killed at any step leaves the old pair or the new one readable.

Each save runs in a subprocess whose file-system calls (rename, replace, link, unlink,
fsync, copy) are counted; at call number k the process dies with ``os._exit`` before
performing it. For every k until the save completes, the checkpoint (or folder) must read
back as the complete old one or the complete new one, and a following save must succeed.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imx500_picosam.errors import PicosamError
from imx500_picosam.model.checkpoint import Checkpoint, Provenance, read_checkpoint

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KILLED = 77

HARNESS = textwrap.dedent('''
    import os, shutil, sys
    from pathlib import Path
    from pathlib import Path
    kill_at, calls = int(sys.argv[1]), [0]
    def counted(function):
        def wrapper(*args, **kwargs):
            if calls[0] == kill_at:
                os._exit(%d)
            calls[0] += 1
            return function(*args, **kwargs)
        return wrapper
    for name in ("replace", "rename", "link", "unlink", "fsync", "rmdir"):
        setattr(os, name, counted(getattr(os, name)))
    shutil.copyfile = counted(shutil.copyfile)
    shutil.rmtree = counted(shutil.rmtree)
    import imx500_picosam.atomic as atomic
    if hasattr(atomic, "_exchange"):
        atomic._exchange = counted(atomic._exchange)
''' % KILLED)


def _fake_pair(weights_path: Path, content: bytes) -> Checkpoint:
    """A checkpoint pair without TensorFlow: the weights are just ``content``."""
    from imx500_picosam.model.checkpoint import write_pair

    def describe(digest):
        return Checkpoint(weights_path, "picosam3", Provenance("trained", {}), digest, 1)

    return write_pair(weights_path, lambda tmp: tmp.write_bytes(content), describe)


def _run_killed(code: str, kill_at: int, cwd: Path) -> int:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    done = subprocess.run([sys.executable, "-c", HARNESS + textwrap.dedent(code), str(kill_at)],
                          cwd=cwd, env=env, capture_output=True, timeout=120)
    assert done.returncode in (0, KILLED), done.stderr.decode()[-2000:]
    return done.returncode


SAVE = '''
    # save_checkpoint itself, with a stand-in model: no TensorFlow needed to write a pair
    import types
    stub = types.ModuleType("imx500_picosam.model.network")
    stub.count_parameters, stub.has_input_normalisation = (lambda model: 1), (lambda model: False)
    sys.modules["imx500_picosam.model.network"] = stub
    from imx500_picosam.model.checkpoint import Provenance, save_checkpoint
    class Model:
        name = "picosam3"
        def save_weights(self, path):
            Path(path).write_bytes(CONTENT * 5000)
    save_checkpoint(Model(), Path("ckpt/model.weights.h5"), Provenance("trained", {"content": CONTENT.decode()}))
'''


def _save(folder: Path, content: bytes, kill_at: int = 10 ** 6) -> int:
    return _run_killed(f"CONTENT = {content!r}\n" + textwrap.dedent(SAVE), kill_at, folder)


@pytest.mark.parametrize("with_old_pair", [True, False])
def test_checkpoint_pair_survives_a_kill_at_every_step(tmp_path, with_old_pair):
    outcomes = []
    allowed = {"old", "new"} if with_old_pair else {"new", "none"}
    for kill_at in range(60):
        folder = tmp_path / f"k{kill_at}"
        weights = folder / "ckpt" / "model.weights.h5"
        weights.parent.mkdir(parents=True)
        if with_old_pair:
            assert _save(folder, b"old") == 0
            old_sha = read_checkpoint(weights).weights_sha256
        code = _save(folder, b"new", kill_at)
        outcomes.append(code)
        try:
            got = read_checkpoint(weights)
            state = got.provenance.details["content"]
        except PicosamError:  # acceptable only before the first pair is complete
            state = "none"
        assert state in allowed, f"killed before file-system call {kill_at}: {state}"
        if state == "old":
            assert got.weights_sha256 == old_sha
        if code == 0:
            assert state == "new"
        # the next save always succeeds and leaves exactly one pair
        assert _save(folder, b"third") == 0
        assert read_checkpoint(weights).provenance.details["content"] == "third"
        assert sorted(p.name for p in weights.parent.iterdir() if ".tmp" not in p.name) == [
            "model.json", "model.weights.h5"]
        if code == 0:
            break
    print(f"checkpoint save killed at {outcomes.count(KILLED)} steps, then completed")
    assert outcomes[-1] == 0 and outcomes.count(KILLED) >= 4, outcomes


DIRECTORY_SAVE = '''
    from pathlib import Path
    from imx500_picosam.atomic import atomic_directory
    with atomic_directory(Path("out")) as work:
        for name in ("a", "b", "c"):
            (work / name).write_text("new")
'''


def test_atomic_directory_survives_a_kill_at_every_step(tmp_path):
    outcomes = []
    for kill_at in range(40):
        folder = tmp_path / f"k{kill_at}"
        (folder / "out").mkdir(parents=True)
        for name in ("a", "b"):
            (folder / "out" / name).write_text("old")
        code = _run_killed(DIRECTORY_SAVE, kill_at, folder)
        outcomes.append(code)
        contents = {p.name: p.read_text() for p in (folder / "out").iterdir()}
        assert contents in ({"a": "old", "b": "old"}, {"a": "new", "b": "new", "c": "new"}), (kill_at, contents)
        if code == 0:
            assert contents["c"] == "new"
            break
    print(f"folder replacement killed at {outcomes.count(KILLED)} steps, then completed")
    assert outcomes[-1] == 0 and outcomes.count(KILLED) >= 2, outcomes


def test_reader_ignores_a_kept_pair_that_does_not_verify(tmp_path):
    from imx500_picosam.model.checkpoint import previous_weights_path

    weights = tmp_path / "m.weights.h5"
    _fake_pair(weights, b"one" * 10)
    weights.write_bytes(b"tampered")
    previous = previous_weights_path(weights)
    previous.write_bytes(b"also tampered")
    (tmp_path / ".m.previous.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(PicosamError, match="does not match its sidecar"):
        read_checkpoint(weights)
