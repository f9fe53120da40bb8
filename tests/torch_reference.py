"""The PyTorch side of tests/test_import_weights.py, run in the separate torch venv.

torch must not be importable in the build venv (MCT's edge-mdt-cl then requires
torchvision, which has no CPU build here), so the tests run this script with
``.venv-torch/bin/python`` (``make torch-reference`` creates it) and compare what it
writes with what the torch-free importer makes of it:

    python tests/torch_reference.py PHOTOS.npy OUT_DIR [CRAFTED.pt ...]

PHOTOS.npy: (N, 96, 96, 3) float32 crops in the sensor's range (uint8 / 256). OUT_DIR gets

* ``picosam3.pt``, ``picosam2.pt``: state dicts of the reference modules below (the
  authors' key names), random weights and random BatchNorm statistics, seed 2;
* ``reference_logits.npz``: their logits (NHWC) on PHOTOS through the authors'
  preprocessing, uint8/255 then ImageNet mean/std;
* ``PicoSAM3_SAM3_epoch1.pt``: a PicoSAM2 state dict under a PicoSAM3 name, as the
  authors' epoch-1 files are;
* ``training_checkpoint.pt``: a DataParallel model's state dict inside a training
  checkpoint (epoch, ``model_state_dict``, ``optimizer_state_dict`` after one Adam step);
* ``tensors.pt`` + ``tensors.npz``: tensors of every storage type with offsets, strides,
  shared storage, 0-d and empty shapes, and what torch holds in them;
* ``legacy.pt`` (pre-1.6 format), ``torchscript.pt`` (torch.jit.save) and
  ``payload.pt`` (a pickle that would run os.system), for the refusals;
* ``crafted.npz`` + ``crafted.json``: the tensors and other values that
  ``torch.load(..., weights_only=True)`` reads from each CRAFTED.pt (the files the tests
  write without torch), by ``file/key/key``, so those are checked to be real torch files.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
SEED = 2


def depthwise_block(cin, cout):
    """The authors' depthwise_conv: dw3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class ChannelGate(nn.Module):
    """The authors' "eca": global average pool -> 1x1 conv (no bias) -> sigmoid -> scale."""

    def __init__(self, channels):
        super().__init__()
        self.conv1x1 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.conv1x1(x.mean(dim=(2, 3), keepdim=True)))


class ReferencePicoSAM(nn.Module):
    """PicoSAM2 / PicoSAM3 written from the architecture description, same key names."""

    def __init__(self, architecture):
        super().__init__()
        self.architecture = architecture
        enc = (3, 48, 96, 160, 256)
        for i in range(1, 5):
            setattr(self, f"encoder_stage{i}", depthwise_block(enc[i - 1], enc[i]))
            setattr(self, f"down{i}", nn.Conv2d(enc[i], enc[i], 3, stride=2, padding=1, bias=False))
        if architecture == "picosam3":
            self.bottleneck = nn.Sequential(
                depthwise_block(256, 320),
                nn.Conv2d(320, 320, 3, padding=2, dilation=2, groups=320, bias=False), nn.BatchNorm2d(320), nn.ReLU(),
                nn.Conv2d(320, 320, 1, bias=False), nn.BatchNorm2d(320), nn.ReLU(),
            )
        else:
            self.bottleneck = depthwise_block(256, 320)
        dec = (320, 192, 128, 80, 40)
        for i in range(1, 5):
            setattr(self, f"up{i}", nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                  depthwise_block(dec[i - 1], dec[i])))
        self.skip_conn4 = nn.Conv2d(256, 192, 1)
        self.skip_conn3 = nn.Conv2d(160, 128, 1)
        self.skip_conn2 = nn.Conv2d(96, 80, 1)
        self.skip_conn1 = nn.Conv2d(48, 40, 1)
        if architecture == "picosam3":
            self.eca = ChannelGate(40)
            self.refine = nn.Sequential(
                nn.Conv2d(40, 40, 3, padding=1, groups=40, bias=False), nn.BatchNorm2d(40), nn.ReLU(),
                nn.Conv2d(40, 1, 1),
            )
        else:
            self.output_head = nn.Conv2d(40, 1, 1)

    def forward(self, x):
        f1 = self.encoder_stage1(x)
        f2 = self.encoder_stage2(self.down1(f1))
        f3 = self.encoder_stage3(self.down2(f2))
        f4 = self.encoder_stage4(self.down3(f3))
        b = self.bottleneck(self.down4(f4))
        u1 = self.up1(b) + self.skip_conn4(f4)
        u2 = self.up2(u1) + self.skip_conn3(f3)
        u3 = self.up3(u2) + self.skip_conn2(f2)
        u4 = self.up4(u3) + self.skip_conn1(f1)
        if self.architecture == "picosam3":
            return self.refine(self.eca(u4))
        return self.output_head(u4)


def random_reference(architecture, seed):
    """Random conv weights plus non-trivial BN affine and running statistics."""
    torch.manual_seed(seed)
    model = ReferencePicoSAM(architecture)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1234)
    return model.eval()


def authors_logits(model, sensor_images):
    """The authors' forward: uint8/255, ImageNet-normalised, NCHW; returns NHWC logits."""
    x = torch.from_numpy(sensor_images.astype(np.float64) * 256.0 / 255.0).permute(0, 3, 1, 2)
    x = ((x - MEAN) / STD).float()
    with torch.no_grad():
        return model(x).permute(0, 2, 3, 1).numpy()


def training_checkpoint(seed):
    """What a training loop with DataParallel saves: epoch, model and optimizer state."""
    model = random_reference("picosam2", seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    model(torch.randn(2, 3, 96, 96)).mean().backward()
    optimizer.step()
    model.eval()
    wrapped = nn.DataParallel(model)  # on a CPU it only renames the keys "module.*"
    return {"epoch": 3, "best_miou": 0.6545, "model_state_dict": wrapped.state_dict(),
            "optimizer_state_dict": optimizer.state_dict()}


def storage_zoo():
    """Tensors that exercise every storage type and layout torch.save writes."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 7, generator=generator)
    tensors = {
        "float32": torch.randn(3, 4, generator=generator),
        "float64": torch.randn(5, dtype=torch.float64, generator=generator),
        "float16": torch.randn(2, 3, generator=generator).half(),
        "bfloat16": torch.randn(4, 2, generator=generator).bfloat16(),
        "int64": torch.arange(-5, 7, dtype=torch.int64).view(3, 4),
        "int32": torch.tensor([-(2 ** 31), 0, 2 ** 31 - 1], dtype=torch.int32),
        "int16": torch.tensor([-300, 7], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "transposed": base.t(),  # strides (1, 7)
        "offset_rows": base[2:5],  # storage offset 14, shares the storage of "transposed"
        "every_other_column": base[:, ::2],  # strides (7, 2)
        "channels_last": torch.randn(2, 3, 4, 5, generator=generator).to(memory_format=torch.channels_last),
        "expanded": torch.randn(3, 1, generator=generator).expand(3, 4),  # stride 0
        "parameter": nn.Parameter(torch.randn(2, 2, generator=generator)),
    }
    expected = {name: (t.float() if t.dtype == torch.bfloat16 else t).detach().numpy() for name, t in tensors.items()}
    return tensors, expected


class Payload:
    """A pickle that runs a shell command when unpickled by a plain pickle.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def main(photos_path, out_dir, crafted):
    out = Path(out_dir)
    photos = np.load(photos_path)
    logits = {}
    for architecture in ("picosam3", "picosam2"):
        model = random_reference(architecture, SEED)
        torch.save(model.state_dict(), out / f"{architecture}.pt")
        logits[architecture] = authors_logits(model, photos)
    np.savez(out / "reference_logits.npz", **logits)

    torch.save(random_reference("picosam2", seed=3).state_dict(), out / "PicoSAM3_SAM3_epoch1.pt")
    torch.save(training_checkpoint(seed=5), out / "training_checkpoint.pt")

    tensors, expected = storage_zoo()
    torch.save(tensors, out / "tensors.pt")
    np.savez(out / "tensors.npz", **expected)

    small = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    torch.save(small.state_dict(), out / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.jit.script(small).save(str(out / "torchscript.pt"))
    torch.save({"weight": torch.zeros(2), "payload": Payload(out / "payload-ran")}, out / "payload.pt")

    tensors, values = {}, {}
    for path in crafted:
        flatten(torch.load(path, map_location="cpu", weights_only=True), Path(path).name, tensors, values)
    np.savez(out / "crafted.npz", **tensors)
    (out / "crafted.json").write_text(json.dumps(values))


def flatten(obj, name, tensors, values):
    """Tensors (as arrays) and other values by their path ``file/key/key``."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(value, f"{name}/{key}", tensors, values)
    elif isinstance(obj, torch.Tensor):
        tensors[name] = obj.numpy()
    else:
        values[name] = list(obj) if isinstance(obj, tuple) else obj


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
