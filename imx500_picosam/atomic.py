"""Write artefacts under a temporary name and rename on success, so nothing half-written
is ever left under a final name and no input is overwritten in place."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, List, Union

from firmware_packaging.files import current_umask, new_file_mode

from .errors import PicosamError

PathLike = Union[str, "os.PathLike[str]"]


# Temporary names carry at most this much of the final name, so that a final name near the
# file system's limit (255 bytes) still leaves room for the temporary one.
TEMP_NAME_KEEP = 64


def check_target(final: PathLike) -> Path:
    """Refuse, before any work is done, an output path that cannot become a file: an
    existing folder, or a name longer than its file system allows."""
    final = Path(final)
    try:
        limit = os.pathconf(_existing_ancestor(final.parent), "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    length = len(os.fsencode(final.name))
    if length > limit:
        raise PicosamError(f"{final.parent / final.name[:40]}…: file name of {length} bytes, longer than the "
                           f"{limit} its file system allows")
    try:
        is_folder = final.is_dir()
    except (OSError, ValueError) as err:  # a path too long in total, a NUL byte
        raise PicosamError(f"{str(final)[:80]}: cannot write there: {getattr(err, 'strerror', None) or err}") from None
    if is_folder:
        raise PicosamError(f"{final}: is a folder; give the output a file name")
    return final


def check_output(final: PathLike, suffixes, option: str = "--out", make_folder=None) -> Path:
    """:func:`check_target`, and before any work: ``final`` must end in one of ``suffixes``
    (a mask PNG is never written into ``mask.txt``) and its folder must exist: a missing one
    is refused (a typo in a folder name is not silently created) unless ``make_folder`` is
    given, a function that is told the line saying it was made (an evaluation run's folder).
    One-line :class:`PicosamError` naming it."""
    final = check_target(final)  # an existing folder is named as such first
    if not final.name.lower().endswith(tuple(suffix.lower() for suffix in suffixes)):
        raise PicosamError(f"{option} {final}: this output must end in {' or '.join(suffixes)}")
    try:
        has_folder = final.parent.is_dir()
    except (OSError, ValueError):
        has_folder = False
    if not has_folder and make_folder is not None:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _cannot_write(final, err) from None
        make_folder(f"made folder {final.parent} for {option} {final.name}")
    elif not has_folder:
        raise PicosamError(f"{option} {final}: folder {final.parent} does not exist; create it first "
                           f"(mkdir -p {final.parent})")
    return final


def _existing_ancestor(folder: Path) -> Path:
    for candidate in (folder, *folder.parents):
        try:
            if candidate.is_dir():
                return candidate
        except (OSError, ValueError):
            continue
    return Path(".")


# Temporary names: ".<final name>.picosam<writer pid>.<mkstemp's 8 characters>.tmp<suffix>".
# Before the pid was part of the name they were ".<final name>.<8 characters>.tmp<suffix>".
_TEMPORARY = re.compile(r"^\..+\.picosam(?P<pid>\d+)\.[a-z0-9_]{8}(\.old)?\.tmp(\.[A-Za-z0-9_]+)*$")
_LEGACY_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9_]+)*$")
# A temporary whose writer is gone is removed once it is this old (a writer on another
# machine sharing the folder has another pid space); any temporary once it is STALE_AFTER old.
DEAD_WRITER_GRACE_S = 60
STALE_AFTER_S = 3600
_swept: set = set()


def _temporary_prefix(final: Path) -> str:
    return f".{final.name[:TEMP_NAME_KEEP]}.picosam{os.getpid()}."


def sweep_stale_temporaries(folder: PathLike) -> List[Path]:
    """Remove the temporaries a killed run of ours left in ``folder``; returns what went.

    Only names of our own pattern are touched, and only when their writer process is gone
    (and a minute has passed) or they are over an hour old. Each folder is swept once per
    process, so writing thousands of files into one folder costs one listing.
    """
    import time

    folder = Path(folder)
    key = str(folder.resolve()) if folder.exists() else None
    if key is None or key in _swept:
        return []
    _swept.add(key)
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None and not _LEGACY_TEMPORARY.match(entry.name):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        writer_gone = match is not None and not _process_alive(int(match["pid"]))
        if not (age > STALE_AFTER_S or (writer_gone and age > DEAD_WRITER_GRACE_S)):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but is not ours to signal, or cannot tell: keep its files
    return True


def _cannot_write(final: Path, err: OSError) -> PicosamError:
    return PicosamError(f"{final}: cannot write: {err.strerror or err.__class__.__name__}")


@contextlib.contextmanager
def temporary_beside(final: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary file path beside ``final``; whatever is left of it is removed
    on the way out. :func:`publish` it to make it ``final``."""
    final = check_target(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_temporaries(final.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(final), suffix=f".tmp{suffix}", dir=final.parent)
    except OSError as err:
        raise _cannot_write(final, err) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def publish(tmp: Path, final: PathLike) -> None:
    """Rename the finished ``tmp`` over ``final`` durably (its data synced first).

    ``mkstemp`` creates files readable by their owner only; the artefact gets the mode any
    newly created file would get (0666 less the umask), as ``open(final, "w")`` gives it.
    """
    final = Path(final)
    os.chmod(tmp, new_file_mode())
    _fsync_file(tmp)
    try:
        os.replace(tmp, final)
    except OSError as err:  # a folder appeared under the name, a read-only file system, ...
        raise _cannot_write(final, err) from None
    _fsync_folder(final.parent)


@contextlib.contextmanager
def atomic_path(final: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; it becomes ``final`` only if the block succeeds.

    ``suffix`` keeps tools happy that insist on a file extension (``.keras``, ``.h5``).
    """
    with temporary_beside(final, suffix) as tmp:
        yield tmp
        publish(tmp, final)


def _fsync_file(path: Path) -> None:
    # A rename can reach the disk before the data it names; sync the data first.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; some file systems cannot sync a folder, which is harmless."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_directory(final: PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``final`` only if the block succeeds.

    The old ``final`` is never deleted before the new one is in place: on Linux the two
    are swapped in one step (``renameat2(RENAME_EXCHANGE)``), elsewhere the old one is
    renamed aside first; only then is it removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final), suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700, as mkdir would have made it
        if final.exists() and _exchange(tmp, final):
            _fsync_folder(final.parent)
            shutil.rmtree(tmp)  # now the old folder
            return
        if final.exists():
            aside = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final), suffix=".old.tmp", dir=final.parent))
            os.replace(final, aside / final.name)
            os.replace(tmp, final)
            _fsync_folder(final.parent)
            shutil.rmtree(aside)
        else:
            os.replace(tmp, final)
            _fsync_folder(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    return result == 0


def replace_symlink(link: PathLike, target: str) -> None:
    """Point ``link`` at ``target`` in one step, as ``ln -s target tmp && mv -T tmp link`` does.

    Readers of ``link`` see the old target or the new one, never a missing link. A regular
    file at ``link`` is not ours to replace, so it is refused rather than overwritten.
    """
    link = Path(link)
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} is a regular file, not a link")
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    finally:
        if tmp.is_symlink():
            tmp.unlink()
    _fsync_folder(link.parent)


def write_json(path: PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
