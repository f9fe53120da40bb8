"""Test double for picamera2.devices.imx500.IMX500 (see picamera2/__init__.py here)."""

import os
import struct
import sys

import numpy as np

from picamera2 import SENSOR_SIZE, _sensor, camera_mode


class IMX500:
    def __init__(self, network_file, camera_id="", tensor_injection=False):
        if camera_mode() == "absent":
            raise RuntimeError("IMX500: Requested camera dev-node not found")
        if not os.path.isfile(network_file):
            raise RuntimeError(f"Firmware file {network_file} does not exist.")
        with open(network_file, "rb") as handle:
            head = handle.read(8)
        if len(head) < 8 or head[:4] != b"9464":
            raise RuntimeError(f"IMX500: Unable to set network firmware {network_file}: [Errno 22] Invalid argument")
        self.size = os.path.getsize(network_file)
        _sensor["network"] = network_file
        _sensor["roi"] = (0, 0) + SENSOR_SIZE

    @property
    def camera_num(self):
        return 0

    def show_network_fw_progress_bar(self):
        print(f"Network Firmware Upload: 100%|##########| {self.size / 1024:.1f}k/{self.size / 1024:.1f}k",
              file=sys.stderr, flush=True)

    def set_inference_roi_abs(self, roi):
        left, top, width, height = (int(v) for v in roi)
        left, top = max(0, left), max(0, top)
        width, height = min(width, SENSOR_SIZE[0] - left), min(height, SENSOR_SIZE[1] - top)
        _sensor["roi"] = (left, top, width, height)

    def get_output_shapes(self, metadata):
        info = metadata.get("CnnOutputTensorInfo")
        if not info:
            return []
        return [[int(n) for n in bytes(info).decode().split(":", 1)[1].split(",")]]

    def get_outputs(self, metadata, add_batch=False):
        values = metadata.get("CnnOutputTensor")
        if not values:
            return None
        flat = np.fromiter(values, dtype=np.float32)
        outputs, offset = [], 0
        for shape in self.get_output_shapes(metadata):
            size = int(np.prod(shape))
            tensor = flat[offset:offset + size].reshape(shape, order="F")
            outputs.append(np.expand_dims(tensor, 0) if add_batch else tensor)
            offset += size
        return outputs

    @staticmethod
    def get_kpi_info(metadata):
        kpi = metadata.get("CnnKpiInfo")
        if kpi is None:
            return None
        return kpi[0] / 1000, kpi[1] / 1000
