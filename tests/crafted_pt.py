"""Write ``torch.save``-format files without torch, for the tests that need no torch.

The zip layout and pickle opcodes are the ones torch 2.x writes (``<archive>/data.pkl``,
``<archive>/data/<key>``, ``byteorder``, ``version``; tensors as
``torch._utils._rebuild_tensor_v2`` over persistent storage ids). The torch reference
run (tests/torch_reference.py) loads these files with ``torch.load(weights_only=True)``
so the tests check that they are what PyTorch itself reads.

Besides numpy arrays (-> tensors), dicts, lists, tuples, strings, numbers, booleans and
None, a value can be :class:`Global` (a pickled reference to ``module.name``) or
:class:`Call` (that global called with arguments, what a malicious pickle does).
"""

import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

STORAGE_TYPES = {
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float32"): "FloatStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("int16"): "ShortStorage",
    np.dtype("int8"): "CharStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    function: Global
    arguments: tuple


class _Writer:
    def __init__(self, byteorder):
        self.out = bytearray()
        self.storages = {}  # key -> bytes
        self.byteorder = byteorder

    def emit(self, obj):
        out = self.out
        if isinstance(obj, np.ndarray):
            self.tensor(obj)
        elif isinstance(obj, Call):
            self.emit(obj.function)
            self.emit(tuple(obj.arguments))
            out += pickle.REDUCE
        elif isinstance(obj, Global):
            out += pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode()
        elif isinstance(obj, OrderedDict):
            self.emit(Call(Global("collections", "OrderedDict"), ()))
            self.items(obj)
        elif isinstance(obj, dict):
            out += pickle.EMPTY_DICT
            self.items(obj)
        elif isinstance(obj, list):
            out += pickle.EMPTY_LIST + pickle.MARK
            for item in obj:
                self.emit(item)
            out += pickle.APPENDS
        elif isinstance(obj, tuple):
            out += pickle.MARK
            for item in obj:
                self.emit(item)
            out += pickle.TUPLE
        elif obj is None:
            out += pickle.NONE
        elif isinstance(obj, bool):
            out += pickle.NEWTRUE if obj else pickle.NEWFALSE
        elif isinstance(obj, int):
            out += pickle.LONG1 + bytes([8]) + struct.pack("<q", obj)
        elif isinstance(obj, float):
            out += pickle.BINFLOAT + struct.pack(">d", obj)
        elif isinstance(obj, str):
            data = obj.encode("utf-8")
            out += pickle.BINUNICODE + struct.pack("<I", len(data)) + data
        else:
            raise TypeError(f"cannot write {type(obj).__name__}")

    def items(self, mapping):
        self.out += pickle.MARK
        for key, value in mapping.items():
            self.emit(key)
            self.emit(value)
        self.out += pickle.SETITEMS

    def tensor(self, array):
        array = np.ascontiguousarray(array)
        key = str(len(self.storages))
        order = "<" if self.byteorder == "little" else ">"
        self.storages[key] = array.astype(array.dtype.newbyteorder(order)).tobytes()
        strides = tuple(s // array.itemsize for s in array.strides) if array.size else (0,) * array.ndim
        self.emit(Global("torch._utils", "_rebuild_tensor_v2"))
        self.out += pickle.MARK
        # The persistent id of the storage, then BINPERSID turns it into the storage.
        self.emit(("storage", Global("torch", STORAGE_TYPES[array.dtype]), key, "cpu", int(array.size)))
        self.out += pickle.BINPERSID
        for item in (0, tuple(int(n) for n in array.shape), strides, False, OrderedDict()):
            self.emit(item)
        self.out += pickle.TUPLE + pickle.REDUCE


def pickle_bytes(obj, byteorder="little"):
    """``(data.pkl bytes, {storage key: bytes})`` for ``obj``."""
    writer = _Writer(byteorder)
    writer.out += pickle.PROTO + bytes([2])
    writer.emit(obj)
    writer.out += pickle.STOP
    return bytes(writer.out), writer.storages


def write_pt(path, obj, byteorder="little", archive=None, extra_records=None, edit_pickle=None):
    """Write ``obj`` to ``path`` as ``torch.save`` would; returns ``path``.

    ``edit_pickle`` (bytes -> bytes) changes data.pkl before it is zipped, for files
    whose pickle says something the writer would not.
    """
    data, storages = pickle_bytes(obj, byteorder)
    if edit_pickle is not None:
        data = edit_pickle(data)
    archive = archive or path.stem
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", data)
        zf.writestr(f"{archive}/byteorder", byteorder)
        for key, payload in storages.items():
            zf.writestr(f"{archive}/data/{key}", payload)
        zf.writestr(f"{archive}/version", "3\n")
        for name, payload in (extra_records or {}).items():
            zf.writestr(f"{archive}/{name}", payload)
    return path


def _long(value):
    return pickle.LONG1 + bytes([8]) + struct.pack("<q", value)


def _tuple(*values):
    return pickle.MARK + b"".join(_long(v) for v in values) + pickle.TUPLE


def views_pickle(numel, views):
    """data.pkl of a dict whose entries are ``views`` = [(offset, size, stride)] of ONE storage."""
    out = bytearray(pickle.PROTO + bytes([2]) + pickle.EMPTY_DICT + pickle.MARK)
    storage = (pickle.MARK + pickle.BINUNICODE + struct.pack("<I", 7) + b"storage"
               + pickle.GLOBAL + b"torch\nFloatStorage\n" + pickle.BINUNICODE + struct.pack("<I", 1) + b"0"
               + pickle.BINUNICODE + struct.pack("<I", 3) + b"cpu" + _long(numel) + pickle.TUPLE + pickle.BINPERSID)
    for number, (offset, size, stride) in enumerate(views):
        name = f"t{number}".encode()
        out += pickle.BINUNICODE + struct.pack("<I", len(name)) + name
        out += pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n" + pickle.MARK
        out += (storage + pickle.BINPUT + b"\x00") if number == 0 else (pickle.BINGET + b"\x00")
        out += _long(offset) + _tuple(size) + _tuple(stride) + pickle.NEWFALSE + pickle.EMPTY_DICT
        out += pickle.TUPLE + pickle.REDUCE
    out += pickle.SETITEMS + pickle.STOP
    return bytes(out)
