"""Issue 15, finding 6: decompression bombs and impossible --out paths are one line, early."""

import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from imx500_picosam.images import MAX_IMAGE_PIXELS, image_size, load_image_rgb
from imx500_picosam.model.checkpoint import DEFAULT_CHECKPOINT
from imx500_picosam.cli import main
from imx500_picosam.errors import PicosamError


def png_claiming(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` (its pixel data is a few bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (10_000, 10_000)])  # Pillow: error / only a warning
def test_an_image_header_claiming_a_huge_size_is_one_line(width, height, tmp_path):
    assert width * height > MAX_IMAGE_PIXELS
    path = png_claiming(tmp_path / "bomb.png", width, height)
    for read in (load_image_rgb, image_size):
        with pytest.raises(PicosamError) as err:
            read(path)
        assert str(path) in str(err.value) and "refused" in str(err.value) and "\n" not in str(err.value)


def _segment(tmp_path, image, out, *extra):
    return CliRunner().invoke(main, ["segment", "--checkpoint", str(DEFAULT_CHECKPOINT), "--image", str(image),
                                     "--box", "1,1,5,5", "--out", str(out), *extra])


def test_segment_with_a_bomb_image_is_one_line(tmp_path):
    result = _segment(tmp_path, png_claiming(tmp_path / "bomb.png", 100_000, 100_000), tmp_path / "mask.png")
    assert result.exit_code == 1 and "bomb.png: image header claims" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_segment_out_naming_a_folder_is_one_line_before_any_work(tmp_path):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    (tmp_path / "masks").mkdir()
    result = _segment(tmp_path, image, tmp_path / "masks")
    assert result.exit_code == 1 and "masks: is a folder" in result.output, result.output
    assert isinstance(result.exception, SystemExit)


def test_segment_out_with_an_overlong_name_is_one_line(tmp_path):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    result = _segment(tmp_path, image, tmp_path / ("m" * 300 + ".png"))
    assert result.exit_code == 1 and "longer than the 255" in result.output, result.output
    assert isinstance(result.exception, SystemExit)
    result = _segment(tmp_path, image, tmp_path / "mask.png", "--logits", str(tmp_path / ("l" * 300 + ".npy")))
    assert result.exit_code == 1 and "longer than the 255" in result.output


def test_a_final_name_near_the_limit_still_gets_a_temporary_name(tmp_path):
    from imx500_picosam.atomic import atomic_path

    final = tmp_path / ("n" * 250 + ".json")
    with atomic_path(final) as tmp:
        tmp.write_text("{}")
    assert final.read_text() == "{}"
