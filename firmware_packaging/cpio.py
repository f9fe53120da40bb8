"""A minimal reader and writer for ``newc`` CPIO archives (magic ``070701``).

An entry is a 110-byte ASCII header (the magic, then 13 fields of 8 hex digits: ino,
mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
namesize, check), the NUL-terminated name, zero padding to a multiple of 4 bytes counted
from the start of the archive, the data, and zero padding to a multiple of 4 again. An
entry named ``TRAILER!!!`` ends the archive; writers then add zeros up to their block
size (512 bytes for GNU cpio and libarchive).

Every header field and the number of zero bytes after the trailer are kept, so writing
back an unmodified archive gives the original bytes (given that its alignment padding
is zeros and its hex digits upper case, as GNU cpio and the vendor packages write them).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, fields
from typing import Iterable

MAGIC = b"070701"
TRAILER_NAME = "TRAILER!!!"
HEADER_SIZE = 110
ALIGNMENT = 4
BLOCK_SIZE = 512
FIELD_WIDTH = 8
_HEADER_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
                  "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")
MAX_FIELD_VALUE = 0xFFFFFFFF
_HEX_DIGITS = frozenset(string.hexdigits.encode())


class CpioFormatError(ValueError):
    """The bytes are not a well-formed newc archive; the message is one line."""


@dataclass(frozen=True)
class CpioEntry:
    """One archive member with every header field that the format stores."""

    name: str
    data: bytes
    ino: int = 0
    mode: int = 0o100644
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    devmajor: int = 0
    devminor: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0
    check: int = 0


@dataclass(frozen=True)
class CpioArchive:
    """The members in archive order, the trailer entry, and the zeros that follow it."""

    entries: tuple[CpioEntry, ...]
    trailer: CpioEntry
    padding: int

    def entry(self, name: str) -> CpioEntry | None:
        return next((entry for entry in self.entries if entry.name == name), None)

    def to_bytes(self) -> bytes:
        body = _encode_members([*self.entries, self.trailer])
        return body + bytes(self.padding)

    def with_entries(self, entries: Iterable[CpioEntry], block_size: int = BLOCK_SIZE) -> CpioArchive:
        """This archive holding ``entries`` instead, zero-padded to ``block_size`` like a new one."""
        entries = tuple(entries)
        unpadded_size = len(_encode_members([*entries, self.trailer]))
        return CpioArchive(entries, self.trailer, -unpadded_size % block_size)


def read_cpio(data: bytes) -> CpioArchive:
    """Parse a whole newc archive; raise :class:`CpioFormatError` on anything malformed."""
    entries: list[CpioEntry] = []
    offset = 0
    while True:
        entry, offset = _read_entry(data, offset, len(entries))
        if entry.name == TRAILER_NAME:
            return CpioArchive(tuple(entries), entry, _trailing_zeros(data, offset))
        entries.append(entry)


def _read_entry(data: bytes, offset: int, index: int) -> tuple[CpioEntry, int]:
    """The entry whose header starts at ``offset``, and the offset just past its data."""
    header = _take(data, offset, HEADER_SIZE, f"entry {index} header")
    if header[: len(MAGIC)] != MAGIC:
        raise CpioFormatError(
            f"entry {index} at archive offset {offset} has magic {header[:len(MAGIC)]!r}, not {MAGIC.decode()!r}"
        )
    values = _parse_fields(header, offset, index)
    name_size = values.pop("namesize")
    data_size = values.pop("filesize")
    name_offset = offset + HEADER_SIZE
    name = _decode_name(_take(data, name_offset, name_size, f"entry {index} name"), offset, index)
    data_offset = _aligned(name_offset + name_size)
    payload = _take(data, data_offset, data_size, f"entry {index} ({name!r}) data")
    return CpioEntry(name=name, data=payload, **values), _aligned(data_offset + data_size)


def _parse_fields(header: bytes, offset: int, index: int) -> dict[str, int]:
    values = {}
    for position, name in enumerate(_HEADER_FIELDS):
        start = len(MAGIC) + position * FIELD_WIDTH
        text = header[start : start + FIELD_WIDTH]
        # int(..., 16) would also accept signs, spaces and "0x", which no writer emits.
        if not _HEX_DIGITS.issuperset(text):
            raise CpioFormatError(
                f"entry {index} at archive offset {offset}: field {name} is {text!r}, not 8 hex digits"
            )
        values[name] = int(text, 16)
    return values


def _decode_name(raw: bytes, offset: int, index: int) -> str:
    if not raw.endswith(b"\0"):
        raise CpioFormatError(f"entry {index} at archive offset {offset}: name is not NUL-terminated")
    try:
        return raw[:-1].decode("utf-8")
    except UnicodeDecodeError:
        raise CpioFormatError(f"entry {index} at archive offset {offset}: name {raw[:-1]!r} is not UTF-8") from None


def _take(data: bytes, offset: int, size: int, what: str) -> bytes:
    remaining = max(len(data) - offset, 0)
    if size > remaining:
        raise CpioFormatError(
            f"truncated: {what} at archive offset {offset} needs {size} bytes but only {remaining} remain"
        )
    return data[offset : offset + size]


def _trailing_zeros(data: bytes, offset: int) -> int:
    rest = data[offset:]
    if rest.count(0) != len(rest):
        raise CpioFormatError(
            f"{len(rest)} bytes after the trailer at archive offset {offset} are not all zero padding"
        )
    return len(rest)


def _encode_members(entries: list[CpioEntry]) -> bytes:
    out = bytearray()
    for entry in entries:
        _encode_entry(entry, out)
    return bytes(out)


def _encode_entry(entry: CpioEntry, out: bytearray) -> None:
    name = entry.name.encode("utf-8") + b"\0"
    values = {field.name: getattr(entry, field.name) for field in fields(entry) if field.name not in ("name", "data")}
    values["filesize"] = len(entry.data)
    values["namesize"] = len(name)
    for key in _HEADER_FIELDS:
        if not 0 <= values[key] <= MAX_FIELD_VALUE:
            raise CpioFormatError(f"entry {entry.name!r}: {key}={values[key]} does not fit in 8 hex digits")
    out += MAGIC + b"".join(b"%08X" % values[key] for key in _HEADER_FIELDS) + name
    out += bytes(_aligned(len(out)) - len(out))
    out += entry.data
    out += bytes(_aligned(len(out)) - len(out))


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT
