"""Read, summarise and rewrite Sony IMX500 network packages (``.rpk`` files).

Layout, as confirmed byte by byte (hex dump and a scripted walk) on the two vendor
packages in ``shared/fixtures/rpk`` and matching how picamera2's
``IMX500.__ni_from_network`` walks a package:

* The file is one or more firmware blocks, back to back from offset 0.
* A block is a 16-byte header — ASCII magic ``9464``, a big-endian u32 payload size,
  8 flag bytes — then the payload, then a 48-byte footer that *ends* with ASCII
  ``3695``: the footer magic sits at block offset ``size + 60``, so a block frames its
  payload with exactly 64 bytes. (The footer's first 44 bytes are zeros in the
  single-block package and 16 checksum-like bytes plus 28 zeros in the three-block one;
  the footer magic is not at the footer's start.)
* When bit 0 of flag byte 6 (picamera2's "device lock" flag) is set, 32 more bytes
  follow the footer. Neither vendor package sets it; the rule is picamera2's.
* Observed flags: byte 1 is the number of blocks, byte 3 the block's 1-based number,
  byte 7 is 1 on the first block only. Nothing here relies on that.
* The CPIO archive (newc) starts right after the last block with no gap, at offsets
  65008 and 2572752: 4-byte aligned, not 512-byte aligned in the file. Its 4-byte
  alignment counts from the archive's start.
* Each archive is 2048 bytes: after ``TRAILER!!!`` it is padded with zeros (364 and 180
  bytes) to a multiple of 512, as GNU cpio writes it, and the file ends there. Nothing
  follows the archive.
* Members: ``imx500_regs``, ``network_info.txt`` (ASCII ``key=value`` lines) and,
  in the DeepLab package, ``network_intrinsics``: one line of JSON ending in a newline.

picamera2 reads only two members, by exact name: ``network_info.txt`` (the input tensor
width, height and format, and the normalisation constants of network 0) and
``network_intrinsics`` (JSON checked against its ``NetworkIntrinsics`` schema). It gets
output tensor shapes from the camera at run time, not from the package.

The vendor script ``rpk_update_network_intrinsics`` rebuilds the whole archive with
``cpio --create --format=newc --reproducible``, appending ``network_intrinsics`` to the
member list when absent, overwrites the file from the archive's offset and truncates
it there. :func:`write_with_intrinsics` does the same change without touching any
other member's header, and pads the archive to 512 bytes likewise.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .errors import RpkError
from .files import FILE_KINDS, file_kind, new_file_mode

from .cpio import MAGIC as CPIO_MAGIC
from .cpio import CpioArchive, CpioEntry, CpioFormatError, read_cpio

BLOCK_MAGIC = b"9464"
FOOTER_MAGIC = b"3695"
FLAGS_OFFSET = 8
BLOCK_HEADER_SIZE = 16
BLOCK_FRAMING_SIZE = 64
FOOTER_MAGIC_OFFSET = BLOCK_FRAMING_SIZE - len(FOOTER_MAGIC)
DEVICE_LOCK_FLAG_BYTE = 6
DEVICE_LOCK_EXTRA_SIZE = 32
NETWORK_INFO_NAME = "network_info.txt"
INTRINSICS_NAME = "network_intrinsics"
TASKS = ("classification", "object detection", "pose estimation", "segmentation")
# picamera2 only unpacks RGB and BGR input tensors, as three planes.
THREE_PLANE_FORMATS = ("RGB", "BGR")
# The IMX500 holds networks of a few MB (the vendor packages are 67 KB to 4.1 MB); a file
# beyond this is not a network package and is refused before it is read.
MAX_PACKAGE_BYTES = 64 << 20
# Intrinsics are a flat object with a few nested ones; deeper JSON is refused.
MAX_JSON_DEPTH = 32
# What every one of the 17 packages in raspberrypi/imx500-models (and both fixtures) has:
# flag byte 1 holds the number of blocks, flag byte 3 the block's 1-based number, and the
# 28 footer bytes between the payload's last 16 bytes and the footer magic are zero.
BLOCK_COUNT_FLAG_BYTE = 1
BLOCK_NUMBER_FLAG_BYTE = 3
FOOTER_RESERVED = slice(16, 44)  # within the 48 bytes after the payload
# What the container does not let a reader check, said by ``rpk inspect``.
NOT_VERIFIED = (
    "firmware payload contents: the package carries no checksum or signature known here "
    "(the 16 footer bytes after each payload are not an MD5/SHA/CRC of it), so a changed "
    "payload byte is only caught by the camera"
)


@dataclass(frozen=True)
class FirmwareBlock:
    """One framed firmware block; ``offset`` is where its header starts in the file."""

    index: int
    offset: int
    payload_size: int
    flags: bytes
    framed_size: int

    @property
    def device_locked(self) -> bool:
        return bool(self.flags[DEVICE_LOCK_FLAG_BYTE] & 1)


@dataclass(frozen=True)
class RpkPackage:
    """A parsed package: its firmware blocks and the CPIO archive after them."""

    path: Path
    size: int
    blocks: tuple[FirmwareBlock, ...]
    cpio_offset: int
    cpio: CpioArchive
    network_info: dict[str, str]
    intrinsics: dict | None


def read_rpk(path: str | os.PathLike) -> RpkPackage:
    """Parse and validate the package at ``path``; any defect raises :class:`RpkError`."""
    path = Path(path)
    return _parse_package(path, _read_bytes(path))


def _parse_package(path: Path, data: bytes) -> RpkPackage:
    blocks = _read_blocks(path, data)
    cpio_offset = blocks[-1].offset + blocks[-1].framed_size
    archive = _read_archive(path, data, cpio_offset)
    _check_block_flags(path, blocks)
    members = _members_by_name(path, archive)
    if NETWORK_INFO_NAME not in members:
        raise _error(path, f"the CPIO archive at offset {cpio_offset} holds no {NETWORK_INFO_NAME}")
    return RpkPackage(
        path=path,
        size=len(data),
        blocks=tuple(blocks),
        cpio_offset=cpio_offset,
        cpio=archive,
        network_info=_parse_network_info(path, members[NETWORK_INFO_NAME].data),
        intrinsics=_parse_intrinsics(path, members.get(INTRINSICS_NAME)),
    )


def _read_bytes(path: Path) -> bytes:
    """The whole file, if it is a regular file of at most :data:`MAX_PACKAGE_BYTES`.

    Opened without blocking (a FIFO would wait for a writer forever) and checked with
    ``fstat`` before anything is read, so ``/dev/zero`` or a huge file is one line.
    """
    import stat

    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise _error(path, f"cannot read: {err.strerror or err}") from err
    except ValueError as err:  # a NUL byte in the name
        raise _error(path, f"cannot read: {err}") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _error(path, "not a regular file (a device, FIFO or folder); refusing to read it")
        if info.st_size > MAX_PACKAGE_BYTES:
            raise _error(path, f"{info.st_size:,} bytes, more than any IMX500 network package "
                               f"(at most {MAX_PACKAGE_BYTES:,}); refusing to read it")
        try:
            # What fstat says, and one byte more to see growth: read(MAX + 1) would allocate
            # 64 MiB for any file (a Pi Zero 2 W has 512 MB).
            data = handle.read(info.st_size + 1)
        except OSError as err:
            raise _error(path, f"cannot read: {err.strerror or err}") from err
    if len(data) > info.st_size:
        raise _error(path, f"grew past the {info.st_size:,} bytes it had when opened while being read "
                           "(is it still being written?); refusing it")
    return data


def _error(path: Path, message: str) -> RpkError:
    return RpkError(f"{path}: {message}")


def _read_blocks(path: Path, data: bytes) -> list[FirmwareBlock]:
    if not data:
        raise _error(path, "empty file")
    if not data.startswith(BLOCK_MAGIC):
        kind = file_kind(path)
        if kind == "packerOut":
            raise _error(path, f"is {FILE_KINDS[kind]}, not an RPK: package it first with "
                               f"`picosam package --packer-out {path}` (imx500-package, on Raspberry Pi OS)")
        if kind is not None and kind != "text":
            raise _error(path, f"is {FILE_KINDS[kind]}, not an IMX500 network package (.rpk)")
        raise _error(path, f"not an IMX500 network package: starts with {data[:8]!r}, not block magic '9464'")
    blocks: list[FirmwareBlock] = []
    offset = 0
    while data.startswith(BLOCK_MAGIC, offset):
        block = _read_block(path, data, len(blocks), offset)
        blocks.append(block)
        offset += block.framed_size
    return blocks


def _check_block_flags(path: Path, blocks: list[FirmwareBlock]) -> None:
    for block in blocks:
        count, number = block.flags[BLOCK_COUNT_FLAG_BYTE], block.flags[BLOCK_NUMBER_FLAG_BYTE]
        if count != len(blocks) or number != block.index + 1:
            raise _error(path, f"firmware block {block.index} at offset {block.offset}: its flags say block "
                               f"{number} of {count}, but it is block {block.index + 1} of {len(blocks)}")


def _read_block(path: Path, data: bytes, index: int, offset: int) -> FirmwareBlock:
    remaining = len(data) - offset
    if remaining < BLOCK_HEADER_SIZE:
        raise _error(path, f"truncated: firmware block {index} header at offset {offset} "
                           f"needs {BLOCK_HEADER_SIZE} bytes but only {remaining} remain")
    (payload_size,) = struct.unpack_from(">I", data, offset + len(BLOCK_MAGIC))
    flags = data[offset + FLAGS_OFFSET : offset + BLOCK_HEADER_SIZE]
    block = FirmwareBlock(index, offset, payload_size, flags, payload_size + BLOCK_FRAMING_SIZE)
    if block.device_locked:
        block = replace(block, framed_size=block.framed_size + DEVICE_LOCK_EXTRA_SIZE)
    if block.framed_size > remaining:
        raise _error(path, f"truncated: firmware block {index} at offset {offset} claims {payload_size} "
                           f"payload bytes ({block.framed_size} with framing) but only {remaining} remain")
    footer_at = offset + payload_size + FOOTER_MAGIC_OFFSET
    footer = data[footer_at : footer_at + len(FOOTER_MAGIC)]
    if footer != FOOTER_MAGIC:
        raise _error(path, f"firmware block {index} at offset {offset}: footer magic at offset {footer_at} "
                           f"is {footer!r}, not '3695'")
    after_payload = offset + BLOCK_HEADER_SIZE + payload_size
    reserved = data[after_payload:after_payload + FOOTER_MAGIC_OFFSET - BLOCK_HEADER_SIZE][FOOTER_RESERVED]
    if any(reserved):
        raise _error(path, f"firmware block {index} at offset {offset}: footer bytes "
                           f"{after_payload + FOOTER_RESERVED.start}-{after_payload + FOOTER_RESERVED.stop - 1} "
                           f"are not zero")
    return block


def _read_archive(path: Path, data: bytes, offset: int) -> CpioArchive:
    if offset == len(data):
        raise _error(path, f"truncated: no CPIO archive after the firmware blocks (file ends at offset {offset})")
    if not data.startswith(CPIO_MAGIC, offset):
        found = data[offset : offset + len(CPIO_MAGIC)]
        raise _error(path, f"expected block magic '9464' or CPIO magic '070701' at offset {offset}, found {found!r}")
    try:
        return read_cpio(data[offset:])
    except CpioFormatError as err:
        raise _error(path, f"CPIO archive at offset {offset}: {err}") from err


def _members_by_name(path: Path, archive: CpioArchive) -> dict[str, CpioEntry]:
    members: dict[str, CpioEntry] = {}
    for entry in archive.entries:
        if entry.name in members:
            raise _error(path, f"the CPIO archive holds {entry.name!r} twice")
        members[entry.name] = entry
    return members


def _parse_network_info(path: Path, raw: bytes) -> dict[str, str]:
    """The ``key=value`` lines; a key repeated for a later network keeps network 0's value."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _error(path, f"{NETWORK_INFO_NAME} is not ASCII text") from None
    info: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        key, separator, value = line.strip().partition("=")
        if not key and not separator:
            continue
        if not key or not separator:
            raise _error(path, f"{NETWORK_INFO_NAME} line {number} is not key=value: {line.strip()!r}")
        info.setdefault(key, value)
    return info


def _parse_intrinsics(path: Path, entry: CpioEntry | None) -> dict | None:
    if entry is None:
        return None
    intrinsics = _json_loads(path, entry.data, INTRINSICS_NAME)
    if not isinstance(intrinsics, dict):
        raise _error(path, f"{INTRINSICS_NAME} must be a JSON object, not {_json_type(intrinsics)}")
    return intrinsics


def _json_loads(path: Path, text: str | bytes, what: str) -> Any:
    """``json.loads`` whose every failure (syntax, nesting, huge integers) is one line."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _error(path, f"{what} is nested deeper than this reader follows") from None
    except ValueError as err:
        raise _error(path, f"{what} is not valid JSON: {str(err)[:120]}") from None
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise _error(path, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _json_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def summarize(pkg: RpkPackage) -> dict:
    """A JSON-serialisable description of ``pkg``; facts the package lacks are ``None``."""
    return {
        "file": str(pkg.path),
        "size": pkg.size,
        "blocks": [
            {"index": b.index, "offset": b.offset, "payload_size": b.payload_size,
             "framed_size": b.framed_size, "flags": b.flags.hex()}
            for b in pkg.blocks
        ],
        "cpio": {
            "offset": pkg.cpio_offset,
            "size": pkg.size - pkg.cpio_offset,
            "entries": [{"name": e.name, "size": len(e.data)} for e in pkg.cpio.entries],
        },
        "network_info": dict(pkg.network_info),
        "intrinsics": pkg.intrinsics,
        "input_tensor": _input_tensor_facts(pkg),
        "output_tensors": _output_tensor_facts(pkg),
        "verified": [
            "block framing (header and footer magic, sizes within the file)",
            "block flags (number of blocks, block numbers) and zero footer bytes",
            "CPIO archive structure, member names and zero padding",
            f"{NETWORK_INFO_NAME} as key=value ASCII, {INTRINSICS_NAME} as JSON",
        ],
        "not_verified": [NOT_VERIFIED],
    }


def _input_tensor_facts(pkg: RpkPackage) -> dict:
    """Input tensor facts as picamera2 derives them from network 0's ``network_info.txt`` keys."""
    tensor_format = pkg.network_info.get("inputTensorFormat")
    facts: dict[str, Any] = {
        "width": _info_int(pkg, "inputTensorWidth"),
        "height": _info_int(pkg, "inputTensorHeight"),
        "format": tensor_format,
        "channels": 3 if tensor_format in THREE_PLANE_FORMATS else None,
        "dtype": None,
        "norm_val": None,
        "div_val": None,
    }
    if tensor_format in THREE_PLANE_FORMATS:
        facts.update(_normalisation(pkg, tensor_format))
    return facts


def _normalisation(pkg: RpkPackage, tensor_format: str) -> dict:
    """picamera2's reading of the ``inputTensorNorm_K..`` registers (13- and 12-bit signed)."""
    outer = ("K00", "K22") if tensor_format == "RGB" else ("K02", "K20")
    names = ("K03", "K13", "K23", outer[0], "K11", outer[1])
    registers = [_info_int(pkg, f"inputTensorNorm_{name}", base=0) for name in names]
    if None in registers:
        return {}
    return {
        "dtype": "signed" if _sign_bit(registers[0], 13) else "unsigned",
        "norm_val": [_signed(value, 13) for value in registers[:3]],
        "div_val": [_signed(value, 12) for value in registers[3:]],
    }


def _sign_bit(value: int, bits: int) -> bool:
    return bool((value >> (bits - 1)) & 1)


def _signed(value: int, bits: int) -> int:
    return -((-value) & ((1 << bits) - 1)) if _sign_bit(value, bits) else value


def _output_tensor_facts(pkg: RpkPackage) -> dict:
    """What ``network_info.txt`` declares about outputs (picamera2 itself ignores these keys)."""
    count = _info_int(pkg, "outputTensorNum")
    if count is not None and not 0 <= count <= len(pkg.network_info):
        # Each output is described by keys of network_info.txt; more outputs than keys is not a package.
        raise _error(pkg.path, f"{NETWORK_INFO_NAME}: outputTensorNum={count} but the file has only "
                               f"{len(pkg.network_info)} keys")
    tensors = [
        {
            "index": number,
            "dim_size": _info_int(pkg, f"outputTensorDimSize{number}"),
            "bytes_per_element": _info_int(pkg, f"outputTensorBytesPerElement{number}"),
            "padding": _info_int(pkg, f"outputTensorPadding{number}"),
        }
        for number in range(1, (count or 0) + 1)
    ]
    return {"count": count, "tensors": tensors}


def _info_int(pkg: RpkPackage, key: str, base: int = 10) -> int | None:
    value = pkg.network_info.get(key)
    if value is None:
        return None
    try:
        return int(value, base)
    except ValueError:
        raise _error(pkg.path, f"{NETWORK_INFO_NAME}: {key}={value!r} is not an integer") from None


IntrinsicsCheck = Callable[[Any, str], None]


def _expect(accepts: Callable[[Any], bool], expected: str) -> IntrinsicsCheck:
    def check(value: Any, where: str) -> None:
        if not accepts(value):
            raise ValueError(f"{where} must be {expected}, got {_brief(value)}")

    return check


def _json_object(fields: dict[str, IntrinsicsCheck], required: tuple[str, ...] = ()) -> IntrinsicsCheck:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'intrinsics'} must be a JSON object, got {_json_type(value)}")
        for key in required:
            if key not in value:
                raise ValueError(f"{where} needs {key!r}")
        for key, check_field in fields.items():
            if key in value:
                check_field(value[key], f"{where}.{key}" if where else key)

    return check


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_rate(value: Any) -> bool:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and value >= 0


# The schema of picamera2's NetworkIntrinsics; it too lets unknown top-level keys through.
_check_intrinsics = _json_object({
    "task": _expect(lambda value: value in TASKS, "one of " + ", ".join(map(repr, TASKS))),
    "inference_rate": _expect(_is_rate, "a number >= 0"),
    "cpu": _json_object({
        "bbox_normalization": _expect(_is_bool, "a boolean"),
        "bbox_order": _expect(lambda value: value in ("xy", "yx"), "'xy' or 'yx'"),
        "softmax": _expect(_is_bool, "a boolean"),
        "post_processing": _expect(_is_str, "a string"),
    }),
    "input_aspect_ratio": _json_object(
        {"width": _expect(_is_positive_int, "a positive integer"),
         "height": _expect(_is_positive_int, "a positive integer")},
        required=("width", "height"),
    ),
    "classes": _json_object({
        "labels": _expect(lambda value: isinstance(value, list) and all(map(_is_str, value)), "a list of strings"),
        "ignore_undefined": _expect(_is_bool, "a boolean"),
    }),
})


def validate_intrinsics(intrinsics: Any, source: str = INTRINSICS_NAME) -> dict:
    """Return ``intrinsics`` if picamera2 would accept it, else raise naming ``source``."""
    try:
        _check_intrinsics(intrinsics, "")
    except ValueError as err:
        raise RpkError(f"{source}: {err}") from None
    return intrinsics


def build_intrinsics(
    task: str | None = None,
    inference_rate: float | None = None,
    input_aspect_ratio: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Intrinsics from the common fields plus ``extra`` keys, validated like picamera2 does."""
    if extra is not None and not isinstance(extra, dict):
        raise RpkError(f"extra intrinsics must be a dict, got {_json_type(extra)}")
    intrinsics = dict(extra or {})
    given = {"task": task, "inference_rate": inference_rate, "input_aspect_ratio": input_aspect_ratio}
    for key, value in given.items():
        if value is None:
            continue
        if key in intrinsics:
            raise RpkError(f"intrinsics: {key} given both as an argument and in extra")
        intrinsics[key] = value
    return validate_intrinsics(intrinsics, "intrinsics")


def load_intrinsics_json(path: str | os.PathLike) -> dict:
    """Read and validate an intrinsics JSON file; any problem is one line naming the file."""
    path = Path(path)
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise _error(path, f"cannot read: {err}") from None
    return validate_intrinsics(_json_loads(path, text, "intrinsics JSON"), str(path))


def write_with_intrinsics(src: str | os.PathLike, dst: str | os.PathLike, intrinsics: dict) -> None:
    """Write ``src`` to ``dst`` with ``network_intrinsics`` set; only the CPIO archive changes.

    The new file is written beside ``dst``, verified by parsing it back, then renamed
    over ``dst``, so ``dst`` is either the old file or a verified new one.
    """
    src, dst = Path(src), Path(dst)
    _refuse_same_file(src, dst)
    payload = _encode_intrinsics(validate_intrinsics(intrinsics, "intrinsics"))
    data = _read_bytes(src)
    package = _parse_package(src, data)
    archive = _with_intrinsics_member(package.cpio, payload)
    firmware = data[: package.cpio_offset]
    try:
        _write_verified(dst, firmware + archive.to_bytes(),
                        lambda temporary: _verify_written(temporary, dst, package, firmware, json.loads(payload)))
    except OSError as err:
        raise _error(dst, f"cannot write: {err.strerror or err}") from err


def _write_verified(dst: Path, data: bytes, verify: Callable[[Path], None]) -> None:
    """Write ``data`` beside ``dst``, sync it, ``verify`` it, then rename it over ``dst``.

    A reader of ``dst`` sees the old file or the verified new one, never a partial write.
    (``imx500_picosam.atomic`` does this for the rest of the project; these few lines are
    repeated here so that the RPK tools import nothing above them.)
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        verify(temporary)
        os.chmod(temporary, new_file_mode())  # as a new file would get it, not mkstemp's 0600
        os.replace(temporary, dst)
    finally:
        temporary.unlink(missing_ok=True)


def _refuse_same_file(src: Path, dst: Path) -> None:
    same = src.resolve() == dst.resolve() or (src.exists() and dst.exists() and os.path.samefile(src, dst))
    if same:
        raise _error(dst, "refusing to overwrite the input package in place; write to another path")


def _encode_intrinsics(intrinsics: dict) -> bytes:
    try:
        text = json.dumps(intrinsics, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise RpkError(f"intrinsics: cannot be written as JSON: {err}") from None
    # One line and a newline, as the vendor packages store it.
    return (text + "\n").encode("utf-8")


def _with_intrinsics_member(archive: CpioArchive, payload: bytes) -> CpioArchive:
    """Replace the intrinsics member's data in place, or append a new member as the vendor script does."""
    if archive.entry(INTRINSICS_NAME) is not None:
        entries = [replace(e, data=payload) if e.name == INTRINSICS_NAME else e for e in archive.entries]
    else:
        # A fresh inode number: libarchive may link members that share one.
        inode = max((e.ino for e in archive.entries), default=0) + 1
        entries = [*archive.entries, CpioEntry(name=INTRINSICS_NAME, data=payload, ino=inode)]
    return archive.with_entries(entries)


def _verify_written(
    temporary: Path, dst: Path, original: RpkPackage, firmware: bytes, intrinsics: dict
) -> None:
    data = _read_bytes(temporary)
    try:
        written = _parse_package(temporary, data)
    except RpkError as err:
        raise _error(dst, f"the written package does not parse back: {err}") from None
    other_members = [e for e in original.cpio.entries if e.name != INTRINSICS_NAME]
    problems = [
        (written.blocks != original.blocks or data[: len(firmware)] != firmware, "firmware blocks differ"),
        ([e for e in written.cpio.entries if e.name != INTRINSICS_NAME] != other_members, "other members differ"),
        (written.intrinsics != intrinsics, "network_intrinsics reads back differently"),
    ]
    for failed, problem in problems:
        if failed:
            raise _error(dst, f"verification of the written package failed: {problem}")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _brief(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
