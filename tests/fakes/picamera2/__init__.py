"""Test double for picamera2 (Raspberry Pi OS only, needs the camera stack and a sensor).

It offers the public API that imx500_picosam.deploy.smoke uses, with the real library's outputs
and failure modes, for an AI Camera running a network whose one output tensor is
96x96x1 (what the fake imx500-package's RPK stands for):

* ``Picamera2.global_camera_info()`` lists one ``imx500`` (none with FAKE_CAMERA=absent);
* ``IMX500(network_file)`` raises picamera2's RuntimeErrors: no sensor dev-node, missing
  firmware file, a file the driver refuses (not an IMX500 network package);
* starting the camera "uploads" the network: the first FAKE_CAMERA_UPLOAD_FRAMES frames
  (default 3) carry no output tensor, as on the sensor while the firmware loads;
* each later frame's metadata carries ``CnnOutputTensor`` (float32 values),
  ``CnnOutputTensorInfo`` and ``CnnKpiInfo`` (DNN and DSP runtime in microseconds).

FAKE_CAMERA picks the failure to reproduce: ``imx500`` (default, healthy), ``absent`` (no
camera connected), ``sparse`` (an output tensor on one frame in four, as with a network
that overruns the frame time), ``wrong-shape`` (a 10-element output, as the vendor's
input-tensor-only network gives), ``no-network`` (the firmware never starts running).
"""

import os
import time

SENSOR_SIZE = (4056, 3040)
FRAME_PERIOD_S = 0.005
OUTPUT_SHAPES = {"wrong-shape": [10]}
PICOSAM_SHAPE = [96, 96, 1]

# What the sensor driver holds between IMX500() and the camera start, like the real driver.
_sensor = {"network": None, "roi": None}


def camera_mode():
    return os.environ.get("FAKE_CAMERA", "imx500")


class Picamera2:
    @staticmethod
    def global_camera_info():
        if camera_mode() == "absent":
            return []
        return [{"Model": "imx500", "Location": 2, "Rotation": 0,
                 "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a", "Num": 0}]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        cameras = self.global_camera_info()
        self.camera_properties = {"Model": cameras[camera_num]["Model"], "PixelArraySize": SENSOR_SIZE,
                                  "Location": 2, "Rotation": 0}
        self.started = False
        self.closed = False
        self.frame = 0
        self.controls = {}

    def create_preview_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                     buffer_count=4, controls=None, display="main", encode="main", queue=True,
                                     sensor=None, use_case="preview"):
        return {"use_case": use_case, "buffer_count": buffer_count, "controls": dict(controls or {}),
                "main": main or {"format": "XBGR8888", "size": (640, 480)}}

    def configure(self, config):
        self.controls = dict(config.get("controls", {}))

    def start(self, config=None, show_preview=False):
        if self.closed:
            raise RuntimeError("Camera is closed")
        if config is not None:
            self.configure(config)
        self.started = True
        self.frame = 0

    def capture_metadata(self, wait=None):
        if not self.started:
            raise RuntimeError("Camera must be started before capturing")
        time.sleep(FRAME_PERIOD_S)
        self.frame += 1
        metadata = {"SensorTimestamp": int(time.monotonic() * 1e9), "FrameDuration": 33333,
                    "ScalerCrop": (0, 0) + SENSOR_SIZE}
        mode = camera_mode()
        upload_frames = int(os.environ.get("FAKE_CAMERA_UPLOAD_FRAMES", "3"))
        running = _sensor["network"] is not None and self.frame > upload_frames and mode != "no-network"
        if not running or (mode == "sparse" and self.frame % 4):
            return metadata
        shape = OUTPUT_SHAPES.get(mode, PICOSAM_SHAPE)
        count = 1
        for size in shape:
            count *= size
        metadata["CnnOutputTensor"] = [((i * 7 + self.frame) % 13 - 6) / 4.0 for i in range(count)]
        metadata["CnnOutputTensorInfo"] = ("fake:" + ",".join(map(str, shape))).encode()
        metadata["CnnKpiInfo"] = [8000 + 250 * (self.frame % 5), 400]
        return metadata

    def stop(self):
        self.started = False

    def close(self):
        self.started = False
        self.closed = True
