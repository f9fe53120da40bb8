"""The one file-mode rule both packages follow: an artefact written under a temporary name
gets the mode a newly created file would get, 0666 less the process's umask (``mkstemp``
gives 0600). It lives here, at the bottom, because the RPK tools import nothing of
``imx500_picosam``, whose ``atomic`` module uses it too.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file now."""
    return 0o666 & ~current_umask()


# What a file is, from its first bytes: so a command handed the wrong artefact (a
# packerOut.zip where an RPK belongs, a checkpoint where a packerOut.zip belongs) can name it.
FILE_KINDS = {
    "rpk": "an IMX500 network package (.rpk)",
    "packerOut": "a packerOut.zip (the converter's output, not yet packaged)",
    "pt": "a PyTorch checkpoint (.pt)",
    "zip": "a zip archive",
    "checkpoint": "a Keras checkpoint (HDF5, .weights.h5)",
    "image": "an image",
    "text": "a text file",
}
_PACKER_OUT_MEMBER = "dnnParams.xml"  # what imxconv-tf puts in every packerOut.zip


def file_kind(path: "str | os.PathLike[str]") -> "str | None":
    """One of :data:`FILE_KINDS`' keys for ``path``, or None (unknown, unreadable, not a file)."""
    import zipfile

    path = Path(path)
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as handle:
            head = handle.read(512)
    except (OSError, ValueError):
        return None
    if head.startswith(b"9464"):
        return "rpk"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "checkpoint"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")) or head[8:12] == b"WEBP":
        return "image"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "zip"
        if any(Path(name).name == _PACKER_OUT_MEMBER for name in names):
            return "packerOut"
        if any(name.endswith("data.pkl") for name in names):
            return "pt"
        return "zip"
    if head.startswith(b"\x80\x02"):
        return "pt"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text"


def describe_file(path: "str | os.PathLike[str]") -> str:
    """``"a packerOut.zip (...)"``, ``"a text file"``, ... or ``"not a file this project knows"``."""
    kind = file_kind(path)
    return FILE_KINDS[kind] if kind else "not a file this project knows"
