"""Tests of the RPK reader, writer and CLI against the two real vendor packages."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firmware_packaging import rpk
from firmware_packaging.cli import rpk_group
from firmware_packaging.cpio import BLOCK_SIZE, read_cpio
from firmware_packaging.rpk import build_intrinsics, read_rpk, summarize, write_with_intrinsics
from firmware_packaging.errors import RpkError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "rpk"
if not FIXTURES.is_dir():
    pytest.skip(f"vendor RPK fixtures not found at {FIXTURES}", allow_module_level=True)

SMALL = FIXTURES / "imx500_network_inputtensoronly.rpk"
DEEPLAB = FIXTURES / "imx500_network_deeplabv3plus.rpk"
DEEPLAB_INTRINSICS = {"inference_rate": 19, "task": "segmentation"}
NEW_INTRINSICS = {"task": "classification", "inference_rate": 12.5, "input_aspect_ratio": {"width": 4, "height": 3}}
SMALL_CPIO_OFFSET = 65008
DEEPLAB_CPIO_OFFSET = 2572752


def picamera2_style_read(path: Path) -> dict:
    """An independent reader following picamera2's ``IMX500.__ni_from_network``.

    Walk the blocks (header magic, size, flags; footer magic at ``size + 60``; 32 more
    bytes when flag byte 6 bit 0 is set), then walk the newc archive from there as
    libarchive does and parse ``network_info.txt`` line by line as picamera2 does.
    """
    firmware = path.read_bytes()
    offset = 0
    while firmware[offset : offset + 4] == b"9464":
        (size,) = struct.unpack(">I", firmware[offset + 4 : offset + 8])
        lock_flag = firmware[offset + 14]
        assert firmware[offset + size + 60 : offset + size + 64] == b"3695"
        offset += size + 64 + (32 if lock_flag & 1 else 0)
    members = {}
    archive = firmware[offset:]
    position = 0
    while True:
        assert archive[position : position + 6] == b"070701"
        filesize = int(archive[position + 54 : position + 62], 16)
        namesize = int(archive[position + 94 : position + 102], 16)
        name = archive[position + 110 : position + 110 + namesize - 1].decode()
        start = (position + 110 + namesize + 3) & ~3
        if name == "TRAILER!!!":
            break
        members[name] = archive[start : start + filesize]
        position = (start + filesize + 3) & ~3

    network = {}
    raw_info = members["network_info.txt"].decode("ascii")
    for line in io.StringIO(raw_info):
        key, value = line.strip().split("=")
        if key == "networkNum":
            network["networkNum"] = int(value)
    sections = raw_info.split("networkOrdinal=")[1:]
    properties = {}
    for section in sections:
        buffer = io.StringIO(section)
        ordinal = int(buffer.readline())
        properties[ordinal] = dict(line.strip().split("=") for line in buffer)
    assert len(properties) == network["networkNum"]
    intrinsics = json.loads(members["network_intrinsics"]) if "network_intrinsics" in members else None
    return {
        "cpio_offset": offset,
        "input_size": (int(properties[0]["inputTensorWidth"]), int(properties[0]["inputTensorHeight"])),
        "intrinsics": intrinsics,
        "members": members,
    }


def test_small_package_parses() -> None:
    package = read_rpk(SMALL)
    assert len(package.blocks) == 1
    assert package.blocks[0].payload_size == 64944
    assert package.cpio_offset == SMALL_CPIO_OFFSET
    assert [e.name for e in package.cpio.entries] == ["imx500_regs", "network_info.txt"]
    assert package.intrinsics is None
    assert package.network_info["inputTensorWidth"] == "640"


def test_deeplab_package_parses() -> None:
    package = read_rpk(DEEPLAB)
    assert len(package.blocks) == 3
    assert [b.offset for b in package.blocks] == [0, 1048576, 2097152]
    assert package.cpio_offset == DEEPLAB_CPIO_OFFSET
    assert [e.name for e in package.cpio.entries] == ["imx500_regs", "network_info.txt", "network_intrinsics"]
    assert package.intrinsics == DEEPLAB_INTRINSICS


@pytest.mark.parametrize(("path", "width", "height", "outputs"), [(SMALL, 640, 480, 10), (DEEPLAB, 320, 320, 102400)])
def test_summary_tensor_facts(path: Path, width: int, height: int, outputs: int) -> None:
    summary = summarize(read_rpk(path))
    json.dumps(summary)
    assert summary["size"] == path.stat().st_size
    tensor = summary["input_tensor"]
    assert (tensor["width"], tensor["height"], tensor["format"], tensor["channels"]) == (width, height, "RGB", 3)
    assert tensor["norm_val"] == [-2048, -2048, -2048]
    assert tensor["div_val"] == [1024, 1024, 1024]
    assert summary["output_tensors"]["count"] == 1
    assert summary["output_tensors"]["tensors"][0]["dim_size"] == outputs


@pytest.mark.parametrize("path", [SMALL, DEEPLAB])
def test_cpio_round_trip_is_byte_identical(path: Path) -> None:
    data = path.read_bytes()
    archive_bytes = data[read_rpk(path).cpio_offset :]
    archive = read_cpio(archive_bytes)
    assert archive.to_bytes() == archive_bytes
    assert archive.with_entries(archive.entries).to_bytes() == archive_bytes


@pytest.mark.parametrize("path", [SMALL, DEEPLAB])
def test_set_intrinsics_changes_only_the_archive(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.rpk"
    write_with_intrinsics(path, out, NEW_INTRINSICS)
    original, written = read_rpk(path), read_rpk(out)
    assert out.read_bytes()[: original.cpio_offset] == path.read_bytes()[: original.cpio_offset]
    assert written.blocks == original.blocks
    assert written.intrinsics == NEW_INTRINSICS
    kept = [e for e in written.cpio.entries if e.name != "network_intrinsics"]
    assert kept == [e for e in original.cpio.entries if e.name != "network_intrinsics"]
    assert written.cpio.entries[-1].name == "network_intrinsics"
    assert (written.size - written.cpio_offset) % BLOCK_SIZE == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.rpk"]


def test_replacing_intrinsics_keeps_member_header_and_order(tmp_path: Path) -> None:
    out = tmp_path / "out.rpk"
    write_with_intrinsics(DEEPLAB, out, {"task": "segmentation", "inference_rate": 5})
    before = read_rpk(DEEPLAB).cpio.entry("network_intrinsics")
    after = read_rpk(out).cpio.entry("network_intrinsics")
    assert [e.name for e in read_rpk(out).cpio.entries] == ["imx500_regs", "network_info.txt", "network_intrinsics"]
    assert (after.mode, after.mtime, after.ino) == (before.mode, before.mtime, before.ino)
    assert after.data == b'{"task": "segmentation", "inference_rate": 5}\n'


def test_restoring_vendor_intrinsics_gives_back_the_vendor_file(tmp_path: Path) -> None:
    changed, restored = tmp_path / "changed.rpk", tmp_path / "restored.rpk"
    write_with_intrinsics(DEEPLAB, changed, NEW_INTRINSICS)
    write_with_intrinsics(changed, restored, DEEPLAB_INTRINSICS)
    assert restored.read_bytes() == DEEPLAB.read_bytes()


@pytest.mark.parametrize("path", [SMALL, DEEPLAB])
def test_written_package_reads_like_picamera2_reads_it(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.rpk"
    write_with_intrinsics(path, out, NEW_INTRINSICS)
    before, after = picamera2_style_read(path), picamera2_style_read(out)
    assert after["cpio_offset"] == before["cpio_offset"] == read_rpk(out).cpio_offset
    assert after["input_size"] == before["input_size"]
    assert after["intrinsics"] == NEW_INTRINSICS
    assert after["members"]["network_info.txt"] == before["members"]["network_info.txt"]
    assert after["members"]["imx500_regs"] == before["members"]["imx500_regs"]


def test_picamera2_style_reader_agrees_on_vendor_files() -> None:
    assert picamera2_style_read(DEEPLAB)["intrinsics"] == DEEPLAB_INTRINSICS
    assert picamera2_style_read(SMALL)["intrinsics"] is None


def _flipped(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


SMALL_BYTES = SMALL.read_bytes()
DEEPLAB_BYTES = DEEPLAB.read_bytes()
CORRUPT_CASES = {
    "empty": (b"", "empty file"),
    "png": (b"\x89PNG\r\n\x1a\n" + bytes(64), "not an IMX500 network package"),
    "cut in block header": (SMALL_BYTES[:10], "truncated"),
    "cut in payload": (SMALL_BYTES[:30000], "claims 64944"),
    "cut in half": (DEEPLAB_BYTES[: len(DEEPLAB_BYTES) // 2], "truncated"),
    "cut at archive": (SMALL_BYTES[:SMALL_CPIO_OFFSET], "no CPIO archive"),
    "cut in cpio header": (SMALL_BYTES[: SMALL_CPIO_OFFSET + 50], "truncated"),
    "cut in network_info": (SMALL_BYTES[: SMALL_CPIO_OFFSET + 700], "truncated"),
    "cut in trailer": (SMALL_BYTES[: SMALL_CPIO_OFFSET + 1600], "truncated"),
    "flipped first block magic": (_flipped(SMALL_BYTES, 0), "not an IMX500 network package"),
    "flipped second block magic": (_flipped(DEEPLAB_BYTES, 1048576), "expected block magic"),
    "flipped footer magic": (_flipped(SMALL_BYTES, SMALL_CPIO_OFFSET - 4), "footer magic"),
    "flipped cpio magic": (_flipped(SMALL_BYTES, SMALL_CPIO_OFFSET + 516), "magic"),
    "huge block size": (SMALL_BYTES[:4] + b"\xff\xff\xff\xff" + SMALL_BYTES[8:], "claims 4294967295"),
}


@pytest.mark.parametrize("case", CORRUPT_CASES)
def test_corrupt_package_is_one_line_error_naming_file(case: str, tmp_path: Path) -> None:
    data, expected = CORRUPT_CASES[case]
    path = tmp_path / "broken.rpk"
    path.write_bytes(data)
    with pytest.raises(RpkError) as caught:
        read_rpk(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "broken.rpk" in message
    assert expected in message


def test_damage_anywhere_raises_only_rpk_error(tmp_path: Path) -> None:
    path = tmp_path / "damaged.rpk"
    damaged = [SMALL_BYTES[:cut] for cut in range(0, len(SMALL_BYTES), 509)]
    flip_offsets = [*range(16), *range(SMALL_CPIO_OFFSET - 48, len(SMALL_BYTES), 7)]
    damaged += [_flipped(SMALL_BYTES, offset) for offset in flip_offsets]
    for data in damaged:
        path.write_bytes(data)
        try:
            summarize(read_rpk(path))
        except RpkError as err:
            assert "\n" not in str(err) and "damaged.rpk" in str(err)


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RpkError, match="missing.rpk: cannot read"):
        read_rpk(tmp_path / "missing.rpk")


def test_write_refuses_to_overwrite_input(tmp_path: Path) -> None:
    copy = tmp_path / "net.rpk"
    copy.write_bytes(SMALL_BYTES)
    for same in (copy, tmp_path / "." / "net.rpk"):
        with pytest.raises(RpkError, match="refusing to overwrite"):
            write_with_intrinsics(copy, same, NEW_INTRINSICS)
    assert copy.read_bytes() == SMALL_BYTES
    assert [p.name for p in tmp_path.iterdir()] == ["net.rpk"]


def test_failed_verification_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def reject(*args: object) -> None:
        raise RpkError("out.rpk: verification of the written package failed: firmware blocks differ")

    monkeypatch.setattr(rpk, "_verify_written", reject)
    with pytest.raises(RpkError, match="verification"):
        write_with_intrinsics(SMALL, tmp_path / "out.rpk", NEW_INTRINSICS)
    assert list(tmp_path.iterdir()) == []


def test_new_intrinsics_member_gets_an_unused_inode(tmp_path: Path) -> None:
    out = tmp_path / "out.rpk"
    write_with_intrinsics(SMALL, out, NEW_INTRINSICS)
    inodes = [e.ino for e in read_rpk(out).cpio.entries]
    assert len(set(inodes)) == len(inodes)


def test_build_intrinsics_in_picamera2_format() -> None:
    built = build_intrinsics("segmentation", 19, {"width": 1, "height": 1}, extra={"cpu": {"softmax": True}})
    assert built == {"cpu": {"softmax": True}, "task": "segmentation", "inference_rate": 19,
                     "input_aspect_ratio": {"width": 1, "height": 1}}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"task": "counting"}, "task must be one of"),
        ({"inference_rate": -1}, "inference_rate must be a number >= 0"),
        ({"inference_rate": float("nan")}, "inference_rate must be a number >= 0"),
        ({"inference_rate": True}, "inference_rate must be a number >= 0"),
        ({"input_aspect_ratio": {"width": 0, "height": 1}}, "input_aspect_ratio.width must be a positive integer"),
        ({"input_aspect_ratio": {"width": 4}}, "input_aspect_ratio needs 'height'"),
        ({"extra": {"cpu": {"bbox_order": "xyxy"}}}, "cpu.bbox_order must be 'xy' or 'yx'"),
        ({"extra": {"classes": {"labels": [1, 2]}}}, "classes.labels must be a list of strings"),
        ({"task": "segmentation", "extra": {"task": "classification"}}, "task given both"),
    ],
)
def test_build_intrinsics_rejects_bad_values(arguments: dict, expected: str) -> None:
    with pytest.raises(RpkError, match=expected) as caught:
        build_intrinsics(**arguments)
    assert "\n" not in str(caught.value)


def test_cli_inspect_text() -> None:
    result = CliRunner().invoke(rpk_group, ["inspect", str(DEEPLAB)])
    assert result.exit_code == 0, result.output
    assert "firmware blocks: 3" in result.output
    assert "inputTensorWidth: 320" in result.output
    assert 'network_intrinsics: {"inference_rate": 19, "task": "segmentation"}' in result.output
    assert "1048576" in result.output and "0003000200000000" in result.output


def test_cli_inspect_json() -> None:
    result = CliRunner().invoke(rpk_group, ["inspect", str(SMALL), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == summarize(read_rpk(SMALL))


def test_cli_set_intrinsics_from_fields_default_output(tmp_path: Path) -> None:
    copy = tmp_path / "net.rpk"
    copy.write_bytes(SMALL_BYTES)
    arguments = ["set-intrinsics", str(copy), "--task", "classification", "--inference-rate", "30",
                 "--input-aspect-ratio", "4:3"]
    result = CliRunner().invoke(rpk_group, arguments)
    assert result.exit_code == 0, result.output
    assert read_rpk(tmp_path / "net.intrinsics.rpk").intrinsics == {
        "task": "classification", "inference_rate": 30, "input_aspect_ratio": {"width": 4, "height": 3}}
    assert copy.read_bytes() == SMALL_BYTES


def test_cli_set_intrinsics_from_json(tmp_path: Path) -> None:
    intrinsics_file = tmp_path / "intrinsics.json"
    intrinsics_file.write_text(json.dumps(NEW_INTRINSICS))
    out = tmp_path / "out.rpk"
    result = CliRunner().invoke(rpk_group, ["set-intrinsics", str(DEEPLAB), "--json", str(intrinsics_file),
                                            "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_rpk(out).intrinsics == NEW_INTRINSICS


def _assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].lower().startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_refuses_out_equal_to_input(tmp_path: Path) -> None:
    copy = tmp_path / "net.rpk"
    copy.write_bytes(SMALL_BYTES)
    result = CliRunner().invoke(rpk_group, ["set-intrinsics", str(copy), "--task", "segmentation",
                                            "--inference-rate", "5", "--out", str(copy)])
    _assert_one_line_error(result, "refusing to overwrite")
    assert copy.read_bytes() == SMALL_BYTES


def test_cli_corrupt_file_is_error_without_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rpk"
    broken.write_bytes(SMALL_BYTES[:1000])
    result = CliRunner().invoke(rpk_group, ["inspect", str(broken)])
    _assert_one_line_error(result, "broken.rpk", "truncated")


def test_cli_bad_json_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(rpk_group, ["set-intrinsics", str(SMALL), "--json", str(bad),
                                            "--out", str(tmp_path / "out.rpk")])
    _assert_one_line_error(result, "bad.json", "not valid JSON")
    assert not os.path.exists(tmp_path / "out.rpk")


def test_cli_wants_json_or_fields_not_both(tmp_path: Path) -> None:
    intrinsics_file = tmp_path / "intrinsics.json"
    intrinsics_file.write_text("{}")
    runner = CliRunner()
    both = runner.invoke(rpk_group, ["set-intrinsics", str(SMALL), "--json", str(intrinsics_file), "--task",
                                     "segmentation", "--out", str(tmp_path / "out.rpk")])
    neither = runner.invoke(rpk_group, ["set-intrinsics", str(SMALL), "--out", str(tmp_path / "out.rpk")])
    assert both.exit_code == neither.exit_code == 2
    assert not (tmp_path / "out.rpk").exists()


def test_picosam_commands_show_rpk_errors_as_one_line(tmp_path: Path) -> None:
    # The RPK tools raise their own RpkError (they import nothing of imx500_picosam); the
    # picosam command line catches its base, so a broken package given to a picosam
    # command (not the rpk group) is still one line and exit code 1.
    from imx500_picosam.cli import main

    broken = tmp_path / "broken.rpk"
    broken.write_bytes(b"not a network package")
    result = CliRunner().invoke(main, ["demo", "--rpk", str(broken), "--headless", "--out", str(tmp_path / "d")],
                                catch_exceptions=False)
    assert result.exit_code == 1 and "broken.rpk" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_read_allocates_what_fstat_says_not_the_64_mib_limit(tmp_path):
    """Every RPK read used to allocate MAX_PACKAGE_BYTES + 1 (64 MiB) whatever the file's size;
    a Pi Zero 2 W has 512 MB. Reading a small package now peaks near its own size."""
    import tracemalloc

    small = tmp_path / "small.bin"
    small.write_bytes(b"9464" + bytes(100_000))
    tracemalloc.start()
    try:
        data = rpk._read_bytes(small)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == small.read_bytes()
    assert peak < 1 << 20, f"reading a 100 kB file peaked at {peak:,} bytes"


def test_a_file_that_grows_while_read_is_refused(tmp_path, monkeypatch):
    grown = tmp_path / "grown.rpk"
    grown.write_bytes(bytes(5000))
    real_fstat = os.fstat

    def fstat_before_the_append(fd):  # what fstat said before a writer appended 1000 bytes
        result = list(real_fstat(fd))
        result[6] -= 1000  # st_size
        return os.stat_result(result)

    monkeypatch.setattr(rpk.os, "fstat", fstat_before_the_append)
    with pytest.raises(RpkError, match=r"grown.rpk: grew past the 4,000 bytes it had when opened"):
        rpk._read_bytes(grown)
