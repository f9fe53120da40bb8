"""Issue 15, finding 4: a small .pt file cannot make the reader build much more than it holds."""

import io
import pickle
import zipfile

import numpy as np
import pytest

from imx500_picosam.model import torch_file
from imx500_picosam.errors import PicosamError

from crafted_pt import views_pickle, write_pt


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _refusal(path):
    with pytest.raises(PicosamError) as err:
        torch_file.load(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    return message


def test_one_storage_viewed_many_times_is_bounded_by_the_file_size(tmp_path):
    numel = 1 << 16  # 256 KB of float32
    views = [(offset, numel - 2048, 1) for offset in range(600)]  # 600 distinct views: 150 MB of copies
    path = _write_zip(tmp_path / "fanout.pt", {"fanout/data.pkl": views_pickle(numel, views),
                                               "fanout/data/0": np.zeros(numel, np.float32).tobytes()})
    assert path.stat().st_size < 400_000
    assert "its tensors would take more than 4x the file's" in _refusal(path)


def test_the_same_view_repeated_is_built_once(tmp_path):
    numel = 1 << 16
    path = _write_zip(tmp_path / "tied.pt", {"tied/data.pkl": views_pickle(numel, [(0, numel, 1)] * 600),
                                             "tied/data/0": np.arange(numel, dtype=np.float32).tobytes()})
    loaded = torch_file.load(path)
    assert len(loaded) == 600 and all(v is loaded["t0"] for v in loaded.values())
    assert np.array_equal(loaded["t0"], np.arange(numel, dtype=np.float32))


def test_a_stride_0_view_larger_than_its_storage_is_bounded_by_the_file_size(tmp_path):
    # 2^26 float32 from 16 bytes of storage: 256 MB asked of a file of a few hundred bytes.
    path = _write_zip(tmp_path / "stride0.pt", {"stride0/data.pkl": views_pickle(4, [(0, 1 << 26, 0)] * 1),
                                                "stride0/data/0": np.zeros(4, np.float32).tobytes()})
    assert "its tensors would take more than 4x the file's" in _refusal(path)
    # A small expanded view, as torch's expand() makes, is rebuilt as torch holds it.
    small = _write_zip(tmp_path / "expand.pt", {"expand/data.pkl": views_pickle(4, [(0, 16, 0)]),
                                                "expand/data/0": np.arange(4, dtype=np.float32).tobytes()})
    assert np.array_equal(torch_file.load(small)["t0"], np.zeros(16, np.float32))


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    numel = 12 << 20  # 48 MB of zeros, deflated to ~50 KB
    path = _write_zip(tmp_path / "bomb.pt", {"bomb/data.pkl": views_pickle(numel, [(0, numel, 1)]),
                                             "bomb/data/0": bytes(4 * numel)}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 200_000
    assert "a zip bomb?" in _refusal(path)


def test_shared_references_cannot_fan_out(tmp_path):
    nested = [0] * 30
    for _ in range(5):
        nested = [nested] * 30  # pickled once per level, referred to 30 times: 30**6 items as a tree
    data = pickle.dumps({"x": nested}, protocol=2)
    assert len(data) < 2000
    path = write_pt(tmp_path / "memo.pt", {}, edit_pickle=lambda _: data)
    assert "refers to more than 1,000,000 objects" in _refusal(path)


def test_an_ordered_dict_rebuilt_from_one_big_list_many_times_is_bounded(tmp_path):
    pairs = [(i, i) for i in range(5000)]
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.dump(pairs)
    body = buffer.getvalue()[2:-1]  # the list, memoised as it is built
    memo_of_list = pickle.BINPUT + b"\xfe"
    again = pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.MARK + pickle.BINGET + b"\xfe" + pickle.TUPLE + pickle.REDUCE + pickle.POP
    data = pickle.PROTO + bytes([2]) + body + memo_of_list + pickle.POP + again * 400 + pickle.EMPTY_DICT + pickle.STOP
    path = write_pt(tmp_path / "dicts.pt", {}, edit_pickle=lambda _: data)
    assert "refers to more than 1,000,000 objects" in _refusal(path)
