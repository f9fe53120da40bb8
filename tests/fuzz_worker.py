"""The seeded fuzz cases of tests/test_fuzz.py, run in a child process under a memory limit.

``python tests/fuzz_worker.py TARGET SEED COUNT WORKDIR MEMORY_BYTES CASE_SECONDS`` runs COUNT
cases for TARGET (rpk, pt or annotations). Each case is derived from (SEED, TARGET, case
number) alone, so any failure can be replayed by its number. Before each case the worker
prints ``case N``; a case that runs past CASE_SECONDS is killed by SIGALRM's default action
(the parent then sees the signal and the last case started). At the end it prints one
``RESULT {json}`` line: cases, clean errors, accepted, and every other exception.
"""

from __future__ import annotations

import copy
import json
import math
import random
import resource
import shutil
import signal
import sys
import traceback
from collections import OrderedDict
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

RPK_FIXTURES = TESTS.parent.parent / "shared" / "fixtures" / "rpk"
INTERESTING_INTS = [0, 1, -1, 2, 3, 4, 5, 6, 7, 8, 255, 256, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 63 - 1, -(2 ** 63)]
INTERESTING_BYTES = [0x00, 0xFF, 0x7F, 0x80, 0x30, 0x39, 0x0A, 0x3D]


# ---------------------------------------------------------------- byte-level mutations


def mutate_bytes(data: bytes, rng: random.Random, hot: tuple[int, int] | None = None) -> bytes:
    """One to three random edits; with ``hot`` (start, end) most land in that range."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            out += bytes([rng.randrange(256)])
            continue
        if hot and rng.random() < 0.75:
            start, end = max(0, hot[0]), min(len(out), hot[1])
            at = rng.randrange(start, end) if end > start else rng.randrange(len(out))
        else:
            at = rng.randrange(len(out))
        kind = rng.randrange(7)
        if kind == 0:  # flip bits
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1:  # an interesting byte
            out[at] = rng.choice(INTERESTING_BYTES)
        elif kind == 2:  # truncate
            del out[at:]
        elif kind == 3:  # delete a chunk
            del out[at: at + rng.randint(1, 64)]
        elif kind == 4:  # insert random bytes
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        elif kind == 5:  # a big-endian u32 (RPK block sizes)
            out[at: at + 4] = (rng.choice(INTERESTING_INTS) % (1 << 32)).to_bytes(4, "big")
        else:  # eight hex digits (CPIO header fields)
            out[at: at + 8] = f"{rng.choice(INTERESTING_INTS) % (1 << 32):08X}".encode()
    return bytes(out)


def random_json_value(rng: random.Random, depth: int = 0):
    pool = [None, True, False, 0, -1, 1, 7, 2 ** 63, -(2 ** 63), 1e308, -1e8, 1e8, 0.5, math.nan, math.inf, -math.inf,
            "", "x", "segmentation", "0", "NaN", "\u00e9", [], {}, [1, 2, 3, 4], [[1, 2, 3, 4, 5, 6]]]
    choice = rng.randrange(10)
    if choice == 0 and depth < 3:
        return [random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if choice == 1 and depth < 3:
        return {rng.choice(["id", "size", "counts", "x", "width"]): random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if choice == 2:
        nesting = rng.choice([10, 100, 5000])
        return json.loads("[" * nesting + "]" * nesting) if nesting < 900 else {"deep": "[" * nesting}
    return copy.deepcopy(rng.choice(pool))


def mutate_json(document, rng: random.Random):
    """Set, delete or duplicate one random node of ``document`` (in place); returns it."""
    for _ in range(rng.randint(1, 3)):
        parent, key = _random_node(document, rng)
        if parent is None:
            continue
        action = rng.randrange(4)
        if action == 0 and isinstance(parent, dict):
            parent.pop(key, None)
        elif action == 1 and isinstance(parent, list):
            parent.insert(rng.randrange(len(parent) + 1), copy.deepcopy(parent[key]))
        else:
            parent[key] = random_json_value(rng)
    return document


def _random_node(document, rng):
    parent, key, node = None, None, document
    for _ in range(rng.randint(1, 6)):
        if isinstance(node, dict) and node:
            parent, key = node, rng.choice(list(node))
        elif isinstance(node, list) and node:
            parent, key = node, rng.randrange(len(node))
        else:
            break
        node = parent[key]
        if rng.random() < 0.3:
            break
    return parent, key


# ---------------------------------------------------------------- targets


class RpkTarget:
    """The two real vendor packages, damaged; read, summarise, print, and rewrite what reads."""

    def __init__(self, workdir: Path):
        from firmware_packaging import cli
        from firmware_packaging.rpk import read_rpk, summarize, write_with_intrinsics

        self.read_rpk, self.summarize, self.write = read_rpk, summarize, write_with_intrinsics
        self.format_summary = cli.format_summary
        self.json_safe = getattr(cli, "json_safe", lambda value: value)  # what `rpk inspect --json` prints
        self.workdir = workdir
        self.sources = [(p, p.read_bytes()) for p in sorted(RPK_FIXTURES.glob("*.rpk"))]
        if not self.sources:
            raise SystemExit(f"no vendor RPK fixtures in {RPK_FIXTURES}")
        self.cpio_offsets = [read_rpk(p).cpio_offset for p, _ in self.sources]

    def case(self, rng: random.Random, number: int) -> None:
        index = rng.randrange(len(self.sources))
        source, data = self.sources[index]
        cpio = self.cpio_offsets[index]
        kind = rng.randrange(4)
        if kind == 0:  # the CPIO archive and the last footer
            damaged = mutate_bytes(data, rng, hot=(cpio - 64, len(data)))
        elif kind == 1:  # block headers and footers
            block_edges = [0, 4, 8, 12, cpio - 48, cpio - 4] + ([1048576, 1048576 + 8, 1048576 - 48] if cpio > 1048576 else [])
            at = rng.choice(block_edges)
            damaged = mutate_bytes(data, rng, hot=(at, at + 16))
        elif kind == 2:  # a structured member: network_info.txt or network_intrinsics
            damaged = self._member_mutation(source, data, rng)
        else:  # anywhere
            damaged = mutate_bytes(data, rng)
        path = self.workdir / f"case{number}.rpk"
        path.write_bytes(damaged)
        try:
            summary = self.summarize(self.read_rpk(path))
            json.dumps(self.json_safe(summary), allow_nan=False)
            self.format_summary(summary)
            if rng.random() < 0.3:
                out = self.workdir / f"case{number}.out.rpk"
                self.write(path, out, rng.choice([{"task": "segmentation", "inference_rate": 10},
                                                  {"task": "classification", "inference_rate": rng.random() * 30}]))
                self.read_rpk(out)
                out.unlink()
        finally:
            path.unlink()

    def _member_mutation(self, source: Path, data: bytes, rng: random.Random) -> bytes:
        from dataclasses import replace

        from firmware_packaging.cpio import CpioEntry

        package = self.read_rpk(source)
        name = rng.choice(["network_info.txt", "network_intrinsics"])
        entry = package.cpio.entry(name)
        if name == "network_info.txt":
            lines = entry.data.split(b"\r\n")
            at = rng.randrange(len(lines))
            key = lines[at].split(b"=")[0] or b"outputTensorNum"
            value = rng.choice([b"-1", b"0x", b"1" * 5000, b"99999999999", b"", b"=", b"\xff", str(rng.choice(INTERESTING_INTS)).encode()])
            lines[at] = rng.choice([key + b"=" + value, b"outputTensorNum=" + value, b"garbage"])
            payload = b"\r\n".join(lines)
        else:
            payload = json.dumps(mutate_json({"task": "segmentation", "inference_rate": 19,
                                              "cpu": {"softmax": True}}, rng)).encode()
            if rng.random() < 0.2:
                payload = mutate_bytes(payload, rng)
        entries = [replace(e, data=payload) if e.name == name else e for e in package.cpio.entries]
        if entry is None:
            entries.append(CpioEntry(name=name, data=payload, ino=77))
        return data[: package.cpio_offset] + package.cpio.with_entries(entries).to_bytes()


class PtTarget:
    """torch.save-format files crafted without torch (tests/crafted_pt.py), damaged."""

    def __init__(self, workdir: Path):
        from imx500_picosam.model.torch_file import load

        self.load, self.workdir = load, workdir

    def _state(self, rng: random.Random):
        import numpy as np

        dtypes = ["float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"]
        state = OrderedDict()
        for number in range(rng.randint(0, 5)):
            shape = tuple(rng.randint(0, 5) for _ in range(rng.randint(0, 4)))
            state[f"layer{number}.weight"] = np.random.default_rng(rng.randrange(1 << 30)).random(shape).astype(rng.choice(dtypes))
        if rng.random() < 0.3:
            state = {"state_dict": state, "epoch": rng.randint(0, 9), "lr": [0.1, (1, 2)]}
        return state

    def case(self, rng: random.Random, number: int) -> None:
        import zipfile

        from crafted_pt import Call, Global, pickle_bytes, write_pt

        path = self.workdir / f"case{number}.pt"
        state = self._state(rng)
        kind = rng.randrange(6)
        if kind == 0:  # the whole file, bytes
            write_pt(path, state)
            path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        elif kind == 1:  # the pickle only (the zip's checksums stay right)
            write_pt(path, state, edit_pickle=lambda data: mutate_bytes(data, rng))
        elif kind == 2:  # numbers in the pickle: sizes, strides, offsets, storage sizes
            def renumber(data):
                import pickle
                import struct

                out = bytearray(data)
                spots = [i for i in range(len(out) - 9) if out[i] == pickle.LONG1[0] and out[i + 1] == 8]
                for at in rng.sample(spots, min(len(spots), rng.randint(1, 3))):
                    out[at + 2: at + 10] = struct.pack("<q", rng.choice(INTERESTING_INTS))
                return bytes(out)

            write_pt(path, state, edit_pickle=renumber)
        elif kind == 3:  # a global that is not allowed, or a call with odd arguments
            evil = rng.choice([Call(Global("os", "system"), ("true",)), Call(Global("collections", "OrderedDict"), (1, 2)),
                               Call(Global("torch._utils", "_rebuild_parameter"), (1,)), Global("builtins", "eval"),
                               Call(Global("collections", "OrderedDict"), ([1, 2, 3],))])
            write_pt(path, {"x": evil, **state})
        elif kind == 4:  # amplification: what a small file could make the reader build
            self._amplifier(path, rng)
        else:  # the zip itself: members compressed, missing, added, byteorder changed
            data, storages = pickle_bytes(state)
            with zipfile.ZipFile(path, "w", rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as zf:
                zf.writestr("a/data.pkl", data)
                zf.writestr("a/byteorder", rng.choice(["little", "big", "middle", ""]))
                for key, payload in storages.items():
                    if rng.random() < 0.9:
                        zf.writestr(f"a/data/{key}", payload if rng.random() < 0.8 else payload[: len(payload) // 2] + bytes(rng.randint(0, 8)))
                if rng.random() < 0.2:
                    zf.writestr(rng.choice(["a/constants.pkl", "b/data.pkl", "a/data/zz"]), b"x")
        try:
            self.load(path)
        finally:
            path.unlink()

    @staticmethod
    def _amplifier(path: Path, rng: random.Random) -> None:
        """Shared views of one storage, stride-0 views, memo fan-out or a deflated storage."""
        import pickle
        import zipfile

        from crafted_pt import views_pickle

        kind = rng.randrange(4)
        numel = rng.choice([1, 4, 1 << 12, 1 << 16])
        members = {}
        if kind == 0:
            views = [(rng.randrange(numel), rng.randint(1, numel), rng.choice([1, 1, 2])) for _ in range(rng.randint(1, 3000))]
            members["a/data.pkl"] = views_pickle(numel, views)
        elif kind == 1:
            members["a/data.pkl"] = views_pickle(numel, [(0, rng.choice([1 << 20, 1 << 26, 1 << 29]), 0)] * rng.randint(1, 50))
        elif kind == 2:
            nested = [0] * rng.randint(1, 50)
            for _ in range(rng.randint(1, 6)):
                nested = [nested] * rng.randint(2, 50)
            members["a/data.pkl"] = pickle.dumps({"x": nested}, protocol=2)
        else:
            numel = rng.choice([1 << 20, 1 << 22])
            members["a/data.pkl"] = views_pickle(numel, [(0, numel, 1)])
        members["a/data/0"] = bytes(4 * numel)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)


class AnnotationTarget:
    """The tiny COCO set (tests/hostile_inputs.py), its JSON and photos damaged; load, decode, crop."""

    def __init__(self, workdir: Path):
        from hostile_inputs import tiny_coco

        self.workdir = workdir
        self.base_path, self.base_images, self.base_doc = tiny_coco(workdir / "base")
        self.photos = {p.name: p.read_bytes() for p in self.base_images.iterdir()}

    def case(self, rng: random.Random, number: int) -> None:
        from imx500_picosam.learn.data import Augmentation, iterate_crops, load_instances

        folder = self.workdir / f"case{number}"
        images = folder / "images"
        images.mkdir(parents=True)
        for name, data in self.photos.items():
            (images / name).write_bytes(data)
        document = copy.deepcopy(self.base_doc)
        kind = rng.randrange(5)
        if kind <= 2:
            mutate_json(document, rng)
        if kind == 3 or rng.random() < 0.15:  # a damaged photo
            name = rng.choice(sorted(self.photos))
            (images / name).write_bytes(rng.choice([b"", mutate_bytes(self.photos[name], rng), self.photos[name][:40]]))
        if kind == 4 and document["annotations"]:  # a compressed RLE string damaged
            document["annotations"][-1]["segmentation"]["counts"] = mutate_bytes(
                document["annotations"][-1]["segmentation"]["counts"].encode(), rng).decode("latin-1")
        path = folder / "annotations.json"
        text = json.dumps(document)
        path.write_text(mutate_bytes(text.encode(), rng).decode("latin-1") if rng.random() < 0.1 else text)
        try:
            instances = load_instances(path, images)
            for inst in instances.instances:
                instances.decode_mask(inst)
            order = list(range(len(instances.instances)))
            if rng.random() < 0.5:  # a photo that stops decoding after loading
                name = rng.choice(sorted(self.photos))
                (images / name).write_bytes(self.photos[name][: len(self.photos[name]) // 2])
            list(iterate_crops(instances, order, Augmentation(copy_paste=0.5), seed=number, rule="square"))
        finally:
            shutil.rmtree(folder)


TARGETS = {"rpk": RpkTarget, "pt": PtTarget, "annotations": AnnotationTarget}


def clean_error_types() -> tuple:
    from imx500_picosam.errors import PicosamError

    types = [PicosamError]
    try:  # firmware_packaging may carry its own error class
        import firmware_packaging.errors as fp_errors

        types += [value for value in vars(fp_errors).values() if isinstance(value, type) and issubclass(value, Exception)]
    except ImportError:
        pass
    return tuple(types)


def main() -> None:
    target, seed, count, workdir, memory, case_seconds = sys.argv[1:7]
    resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # a hung case kills the process: the parent reports it
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runner = TARGETS[target](workdir)
    clean = clean_error_types()
    counts = {"target": target, "cases": 0, "clean_errors": 0, "accepted": 0, "failures": []}
    for number in range(int(count)):
        print(f"case {number}", flush=True)
        rng = random.Random(f"{seed}/{target}/{number}")
        signal.alarm(int(case_seconds))
        try:
            runner.case(rng, number)
            counts["accepted"] += 1
        except clean as err:
            counts["clean_errors"] += 1
            if "\n" in str(err):
                counts["failures"].append({"case": number, "error": "multi-line message", "message": str(err)[:300]})
        except BaseException as err:  # noqa: BLE001 - the point is to catch and report everything else
            counts["failures"].append({"case": number, "error": err.__class__.__name__, "message": str(err)[:300],
                                       "where": traceback.format_exc().splitlines()[-3:]})
        finally:
            signal.alarm(0)
        counts["cases"] += 1
    print("RESULT " + json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
