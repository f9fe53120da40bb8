"""Issue 15, finding 5: the RPK reader is bounded by the file and verifies what the container allows."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_packaging import rpk
from firmware_packaging.cli import rpk_group
from firmware_packaging.rpk import load_intrinsics_json, read_rpk, summarize
from firmware_packaging.errors import RpkError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "rpk"
if not FIXTURES.is_dir():
    pytest.skip(f"vendor RPK fixtures not found at {FIXTURES}", allow_module_level=True)
SMALL = FIXTURES / "imx500_network_inputtensoronly.rpk"
DEEPLAB = FIXTURES / "imx500_network_deeplabv3plus.rpk"


@pytest.fixture
def alarm():
    """Fail (instead of hanging the suite) when a read blocks for 5 s."""
    def on_alarm(signum, frame):
        raise TimeoutError("blocked for 5 s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def with_member(source: Path, name: str, data: bytes) -> bytes:
    """``source``'s bytes with CPIO member ``name`` replaced (or added) by ``data``."""
    from firmware_packaging.cpio import CpioEntry

    package = read_rpk(source)
    raw = source.read_bytes()
    entries = [replace(e, data=data) if e.name == name else e for e in package.cpio.entries]
    if name not in [e.name for e in entries]:
        entries.append(CpioEntry(name=name, data=data, ino=99))
    return raw[: package.cpio_offset] + package.cpio.with_entries(entries).to_bytes()


def _one_line(call, path) -> str:
    with pytest.raises(RpkError) as err:
        call(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, alarm):
    fifo = tmp_path / "network.rpk"
    os.mkfifo(fifo)
    assert "not a regular file" in _one_line(read_rpk, fifo)
    assert "not a regular file" in _one_line(load_intrinsics_json, fifo)


def test_dev_zero_is_refused_before_reading(alarm):
    assert "not a regular file" in _one_line(read_rpk, Path("/dev/zero"))


def test_a_huge_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.rpk"
    with open(path, "wb") as handle:
        handle.write(SMALL.read_bytes()[:64])
        handle.truncate(rpk.MAX_PACKAGE_BYTES + 1)  # sparse: costs no disk
    assert "more than any IMX500 network package" in _one_line(read_rpk, path)


def test_output_tensor_count_is_bounded_by_the_file(tmp_path):
    info = read_rpk(SMALL).cpio.entry("network_info.txt").data
    path = tmp_path / "outputs.rpk"
    path.write_bytes(with_member(SMALL, "network_info.txt", info.replace(b"outputTensorNum=1\r\n", b"outputTensorNum=1000000000\r\n")))
    assert b"outputTensorNum=1\r\n" in info
    assert "outputTensorNum=1000000000 but the file has only" in _one_line(lambda p: summarize(read_rpk(p)), path)


DEEP = b'{"task": "segmentation", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"


def test_deeply_nested_intrinsics_are_one_line_everywhere(tmp_path):
    path = tmp_path / "deep.rpk"
    path.write_bytes(with_member(DEEPLAB, "network_intrinsics", DEEP))
    assert "nested deeper" in _one_line(read_rpk, path)
    json_file = tmp_path / "deep.json"
    json_file.write_bytes(DEEP)
    assert "nested deeper" in _one_line(load_intrinsics_json, json_file)
    moderately = tmp_path / "moderate.json"
    moderately.write_text('{"task": "segmentation", "x": ' + "[" * 40 + "]" * 40 + "}")
    assert "nested deeper than 32 levels" in _one_line(load_intrinsics_json, moderately)
    result = CliRunner().invoke(rpk_group, ["inspect", str(path)])
    assert result.exit_code == 1 and "nested deeper" in result.output and "Traceback" not in result.output


def test_inspect_json_never_prints_nan(tmp_path):
    path = tmp_path / "nan.rpk"
    path.write_bytes(with_member(DEEPLAB, "network_intrinsics", b'{"task": "segmentation", "inference_rate": NaN, "x": [Infinity]}\n'))
    result = CliRunner().invoke(rpk_group, ["inspect", "--json", str(path)])
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise AssertionError(f"{constant} in the output")

    summary = json.loads(result.output, parse_constant=refuse)
    assert summary["intrinsics"] == {"task": "segmentation", "inference_rate": "nan", "x": ["inf"]}


@pytest.mark.parametrize("where, what, expected", [
    (1, b"\x07", "its flags say block 1 of 7, but it is block 1 of 3"),  # flag byte 1: number of blocks
    (3, b"\x02", "its flags say block 2 of 3, but it is block 1 of 3"),  # flag byte 3: block number
])
def test_block_flags_must_agree_with_the_blocks(where, what, expected, tmp_path):
    data = bytearray(DEEPLAB.read_bytes())
    data[8 + where: 9 + where] = what
    path = tmp_path / "flags.rpk"
    path.write_bytes(bytes(data))
    assert expected in _one_line(read_rpk, path)


def test_reserved_footer_bytes_must_be_zero(tmp_path):
    data = bytearray(SMALL.read_bytes())
    data[16 + 64944 + 20] = 1  # inside the 28 footer bytes every vendor package leaves zero
    path = tmp_path / "footer.rpk"
    path.write_bytes(bytes(data))
    assert "footer bytes 64976-65003 are not zero" in _one_line(read_rpk, path)


def test_inspect_says_what_was_not_verified():
    result = CliRunner().invoke(rpk_group, ["inspect", str(DEEPLAB)])
    assert result.exit_code == 0
    assert "not verified:\n  firmware payload contents" in result.output
    summary = json.loads(CliRunner().invoke(rpk_group, ["inspect", "--json", str(DEEPLAB)]).output)
    assert summary["not_verified"] and summary["verified"]
