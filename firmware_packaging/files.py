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
