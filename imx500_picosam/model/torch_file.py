"""Read the tensors of a ``torch.save`` file without PyTorch.

PyTorch (>= 1.6) writes an uncompressed zip: ``<archive>/data.pkl`` is a pickle of the
saved object in which every tensor is a call ``torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)`` and every storage a *persistent id* ``('storage',
torch.FloatStorage, key, location, numel)`` whose bytes are the record
``<archive>/data/<key>``; ``<archive>/byteorder`` says ``little`` or ``big`` (absent in
files from before PyTorch 2.1, which were little-endian) and ``<archive>/version`` the
record format.

:func:`load` rebuilds that object with every tensor as a numpy array. Nothing in the
file is executed: the pickle is read by an unpickler that knows only the names a state
dict uses (``collections.OrderedDict``, the two tensor rebuild functions and the storage
classes) and refuses every other global, so a file carrying ``os.system`` or a pickled
class is one error line, not code run. The legacy pre-1.6 format and TorchScript archives
(``torch.jit.save``) are recognised and refused with what to do instead.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..errors import PicosamError

# What a pre-1.6 torch.save file starts with: pickle protocol 2 of the magic number
# 0x1950a86a20f9469cfc6c (torch/serialization.py MAGIC_NUMBER).
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
ZIP_LOCAL_HEADER = b"PK\x03\x04"

# torch.<Name>Storage -> numpy element type (little-endian); bfloat16 has no numpy type
# and is widened to float32, which represents every bfloat16 value exactly.
STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

# Far above any PicoSAM tensor (the largest has 102,400 elements); stops a stride-0 view
# in a hostile file from asking for terabytes.
MAX_TENSOR_ELEMENTS = 1 << 30
# Bounds by the file's own size, so a small file cannot make the reader build much more
# than it holds. torch.save stores its records uncompressed, so its members add up to
# the file's size; a zip whose members inflate to more than this multiple is a zip bomb.
MAX_INFLATION = 4
# All tensors built from one file together: this multiple of its size (tied weights share
# a storage and may be viewed more than once); identical views are built once.
MAX_TENSOR_BYTES_PER_FILE_BYTE = 4
BUDGET_SLACK_BYTES = 1 << 20
# Containers and items visited when the result is turned into plain dicts/lists: a pickle
# can refer to one list from many places (memo), which would otherwise multiply.
MAX_OBJECTS = 1_000_000

_RESAVE_HINT = "if it is a whole model from a source you trust, load it in PyTorch and torch.save its state_dict()"


class _Refused(Exception):
    """A reason to stop reading, without the file name (added by :func:`load`)."""


@dataclass(frozen=True)
class _StorageType:
    name: str  # e.g. FloatStorage

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class _Storage:
    """One storage record as a flat native-endian array (bfloat16 already widened)."""

    values: np.ndarray


def _int(value: Any, what: str) -> int:
    # bool is an int subclass but never a valid size, stride or offset.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Refused(f"a tensor's {what} is {value!r}, not a non-negative integer")
    return value


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None,
                    budget: "Optional[_Budget]" = None):
    """``torch._utils._rebuild_tensor_v2`` as a numpy copy of the strided view."""
    if not isinstance(storage, _Storage):
        raise _Refused("a tensor is not built from a storage record")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise _Refused(f"a tensor has size {size!r} and stride {stride!r}")
    offset = _int(storage_offset, "storage offset")
    shape = tuple(_int(s, "size") for s in size)
    steps = tuple(_int(s, "stride") for s in stride)
    values = storage.values
    elements = int(np.prod(shape, dtype=np.float64))
    if elements > MAX_TENSOR_ELEMENTS:
        raise _Refused(f"a tensor of size {shape} has {elements:.3g} elements, more than this reader builds")
    if 0 in shape:
        return np.zeros(shape, dtype=values.dtype)
    # Bounds first: as_strided reads whatever memory the strides point at.
    last = offset + sum((n - 1) * step for n, step in zip(shape, steps))
    if last >= values.size:
        raise _Refused(
            f"a tensor of size {shape} at offset {offset} with stride {steps} reaches element {last} "
            f"of a storage of {values.size}"
        )
    # A view that repeats elements (stride 0 from expand(), overlapping strides) is larger
    # than its storage; torch holds such tensors, so they are rebuilt, and the file's byte
    # budget below is what stops a few bytes of strides from asking for gigabytes.
    if budget is not None:
        budget.spend_bytes(elements * values.itemsize)
    view = np.lib.stride_tricks.as_strided(
        values[offset:], shape=shape, strides=tuple(step * values.itemsize for step in steps), writeable=False
    )
    return np.array(view, copy=True)


class _Budget:
    """What one file may make the reader build, bounded by the file's size."""

    def __init__(self, file_size: int):
        self.bytes_left = MAX_TENSOR_BYTES_PER_FILE_BYTE * file_size + BUDGET_SLACK_BYTES
        self.objects_left = MAX_OBJECTS
        self.file_size = file_size

    def spend_bytes(self, count: int) -> None:
        self.bytes_left -= count
        if self.bytes_left < 0:
            raise _Refused(
                f"its tensors would take more than {MAX_TENSOR_BYTES_PER_FILE_BYTE}x the file's "
                f"{self.file_size:,} bytes (views repeated by the pickle?)"
            )

    def spend_objects(self, count: int) -> None:
        self.objects_left -= count
        if self.objects_left < 0:
            raise _Refused(f"its pickle refers to more than {MAX_OBJECTS:,} objects (shared references fanned out?)")


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its tensor here."""
    if not isinstance(data, np.ndarray):
        raise _Refused("a parameter does not hold a tensor")
    return data


# Every global a state dict (or a training checkpoint of plain values around one) needs.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Knows only :data:`_ALLOWED_GLOBALS`; storages come from the zip's records."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str, budget: _Budget):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages: Dict[str, _Storage] = {}
        self._budget = budget
        self._views: Dict[tuple, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _Refused(
                f"refused to read it: its pickle needs {module}.{name}, which is not part of a state dict "
                f"(a whole pickled model, or code?); nothing was executed; {_RESAVE_HINT}"
            )
        # The two that can build without bound are bound to this file's budget.
        budgeted = {("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
                    ("collections", "OrderedDict"): self._ordered_dict}
        return budgeted.get((module, name), _ALLOWED_GLOBALS[(module, name)])

    def _rebuild_tensor(self, storage, storage_offset, size, stride, *rest):
        """One copy per distinct view: a view the pickle repeats is the same array."""
        try:
            key = (id(storage), storage_offset, size, stride)
            hash(key)
        except TypeError:
            raise _Refused(f"a tensor has size {size!r} and stride {stride!r}") from None
        if key not in self._views:
            self._views[key] = _rebuild_tensor(storage, storage_offset, size, stride, budget=self._budget)
        return self._views[key]

    def _ordered_dict(self, *args):
        if len(args) > 1:
            raise _Refused("an OrderedDict is built with more than one argument")
        if args:
            try:
                count = len(args[0])
            except TypeError:
                raise _Refused("an OrderedDict is built from something without a length") from None
            self._budget.spend_objects(count)
        return collections.OrderedDict(*args)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Refused(f"unknown persistent id {str(pid)[:60]!r} in data.pkl")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _Refused(f"storage type {storage_type!r} is not one of torch's typed storages")
        if not isinstance(key, str):
            raise _Refused(f"storage key {key!r} is not a string")
        numel = _int(numel, "storage size")
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type, key, numel)
        storage = self._storages[key]
        if storage.values.size != numel:
            raise _Refused(f"storage {key} is used with {numel} and {storage.values.size} elements")
        return storage

    def _read_storage(self, storage_type: _StorageType, key: str, numel: int) -> _Storage:
        record = f"{self._prefix}/data/{key}"
        try:
            info = self._archive.getinfo(record)
        except KeyError:
            raise _Refused(f"storage record {record} is missing") from None
        dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
        if info.file_size != numel * dtype.itemsize:
            raise _Refused(
                f"storage record {record} has {info.file_size} bytes, expected {numel} x {dtype.itemsize}"
            )
        values = np.frombuffer(self._archive.read(record), dtype=dtype).astype(dtype.newbyteorder("="))
        if storage_type.name == "BFloat16Storage":
            # bfloat16 is the upper half of a float32.
            values = (values.astype(np.uint32) << 16).view(np.float32)
        return _Storage(values)


def _archive_prefix(names) -> Optional[str]:
    """The folder holding ``data.pkl`` (torch names it after the file; any one name is fine)."""
    prefixes = {name[: -len("/data.pkl")] for name in names if name.endswith("/data.pkl") and name.count("/") == 1}
    return prefixes.pop() if len(prefixes) == 1 else None


def load(path: Path) -> Any:
    """The object ``torch.save`` wrote to ``path``, every tensor as a numpy array.

    Raises :class:`PicosamError` (one line naming ``path``) for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise PicosamError(f"{path}: PyTorch checkpoint not found")
    with open(path, "rb") as handle:
        head = handle.read(len(LEGACY_MAGIC))
    if head == LEGACY_MAGIC:
        raise PicosamError(
            f"{path}: PyTorch's legacy (pre-1.6) file format, which is not read here; "
            f"re-save it in a recent PyTorch: torch.save(torch.load(OLD), NEW)"
        )
    if not zipfile.is_zipfile(path):
        if head.startswith(ZIP_LOCAL_HEADER):
            raise PicosamError(f"{path}: not a readable PyTorch checkpoint: a zip without its end (truncated download?)")
        raise PicosamError(f"{path}: not a readable PyTorch checkpoint (not the zip that torch.save writes; corrupt?)")
    try:
        with zipfile.ZipFile(path) as archive:
            return _load_archive(archive, path.stat().st_size)
    except _Refused as reason:
        raise PicosamError(f"{path}: {reason}") from None
    except PicosamError:
        raise
    except Exception as err:  # a damaged zip or pickle fails in many ways (zip, zlib, EOF, struct, ...)
        detail = (str(err).strip().splitlines() or [""])[0][:120]
        raise PicosamError(
            f"{path}: not a readable PyTorch checkpoint (corrupt or truncated): {err.__class__.__name__}"
            + (f": {detail}" if detail else "")
        ) from None


def _load_archive(archive: zipfile.ZipFile, file_size: int) -> Any:
    infos = archive.infolist()
    inflated = sum(info.file_size for info in infos)
    if inflated > MAX_INFLATION * file_size + BUDGET_SLACK_BYTES:
        raise _Refused(
            f"its zip members inflate to {inflated:,} bytes from a {file_size:,}-byte file, more than "
            f"{MAX_INFLATION}x (torch.save stores them uncompressed; a zip bomb?)"
        )
    names = [info.filename for info in infos]
    prefix = _archive_prefix(names)
    if prefix is None:
        raise _Refused("a zip, but not one torch.save wrote (no single <archive>/data.pkl in it)")
    if f"{prefix}/constants.pkl" in names or any(name.startswith(f"{prefix}/code/") for name in names):
        raise _Refused(
            "a TorchScript archive (torch.jit.save), not a state dict; "
            "in PyTorch save torch.jit.load(FILE).state_dict() with torch.save"
        )
    byteorder = "little"
    if f"{prefix}/byteorder" in names:
        byteorder = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise _Refused(f"byteorder record says {byteorder[:20]!r}, expected little or big")
    data = archive.read(f"{prefix}/data.pkl")
    budget = _Budget(file_size)
    return _plain(_StateDictUnpickler(data, archive, prefix, byteorder, budget).load(), budget)


def _plain(obj: Any, budget: _Budget) -> Any:
    """Dicts as plain dicts (in order): drops the attributes a pickle can set on an
    OrderedDict, such as a state dict's ``_metadata``, so callers see only data.

    Every container and item visited counts against ``budget``: a pickle's shared
    references (one list referred to from many places) cannot multiply without bound."""
    if isinstance(obj, dict):
        budget.spend_objects(1 + len(obj))
        return {key: _plain(value, budget) for key, value in obj.items()}
    if isinstance(obj, list):
        budget.spend_objects(1 + len(obj))
        return [_plain(item, budget) for item in obj]
    if isinstance(obj, tuple):
        budget.spend_objects(1 + len(obj))
        return tuple(_plain(item, budget) for item in obj)
    return obj
