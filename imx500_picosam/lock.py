"""One run per output folder: ``train``, ``teacher cache`` and ``build`` hold a lock on the
folder they write, so a second run started on the same folder stops in one line instead of
writing checkpoints, logs or cache files beside the first.

The lock is an advisory ``flock`` on ``FOLDER/.picosam.lock``; the file also holds the
holder's pid, host, command and start time, which the refusal quotes. The kernel drops a
``flock`` when its process dies however it dies (SIGKILL, out of memory, power loss), so a
lock left by a dead run is never mistaken for a live one: the next run takes it over and
says whose it was. A run that ends cleanly removes the file while still holding it; a run
that locked a file in the moment it was being removed sees that the name now points to
another file (or none) and starts again, so two runs never hold two files of one name.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from .errors import PicosamError

LOCK_NAME = ".picosam.lock"


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _describe(holder: Dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"{holder.get('what', 'a picosam run')} (pid {holder.get('pid', '?')}{where}, started {when})"


class FolderLock:
    """Hold ``folder``'s lock for one run of ``what`` (e.g. ``"picosam train"``).

    ``name`` is the lock file's name: runs that may share a folder by design (the shards of
    one teacher cache) each take their own. Use as a context manager, or call
    :meth:`acquire` and :meth:`release`."""

    def __init__(self, folder, what: str, name: str = LOCK_NAME, notice: Callable[[str], None] = _say):
        self.folder, self.what, self.name, self.notice = Path(folder), what, name, notice
        self.path = self.folder / name
        self._fd: Optional[int] = None

    def acquire(self) -> "FolderLock":
        fd = self._lock_current_file()
        previous = self._read(fd)
        if previous.get("pid") is not None:
            self.notice(f"{self.folder}: taking over the lock of {_describe(previous)}, which is no longer running")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what, "started": time.time(),
                  "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _lock_current_file(self) -> int:
        import fcntl

        while True:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise PicosamError(f"{self.path}: cannot create the run lock: {err.strerror or err}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                raise PicosamError(f"{self.folder}: in use by {_describe(holder)}; wait for it to end, stop it, "
                                   f"or use another folder") from None
            except OSError as err:  # a file system without locks: say so rather than run unguarded
                os.close(fd)
                raise PicosamError(f"{self.path}: cannot lock: {err.strerror or err}") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # its holder removed it as we locked it: lock the file the name holds now

    @staticmethod
    def _read(fd: int) -> Dict:
        try:
            data = os.pread(fd, 4096, 0)
            holder = json.loads(data.decode()) if data.strip() else {}
        except (OSError, ValueError):
            holder = {"what": "a run whose lock file is unreadable"}
        return holder if isinstance(holder, dict) else {}

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink()  # ended cleanly: nothing to take over, nothing left in the folder
        except OSError:
            pass
        os.close(fd)  # closing the only descriptor drops the flock

    def holder(self) -> Dict:
        """Who holds (or last held) the lock, as its file says; {} when free and clean."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return {}
        try:
            return self._read(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
