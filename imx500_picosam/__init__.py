"""PicoSAM3 for the Raspberry Pi AI Camera (Sony IMX500).

The Python API, in three lines (docs/api.md)::

    import imx500_picosam
    model = imx500_picosam.load()                       # or load("x.weights.h5"), load(kind="int8")
    masks = model("photo.jpg", [(150, 60, 150, 140)]).masks   # (N, H, W) bool

Importing the package loads nothing heavy (no TensorFlow, no picamera2: a Raspberry Pi's
base install imports it); the API is looked up on first use.
"""

__all__ = ["load", "Predictor", "Result", "Segmentation"]


def __getattr__(name):
    if name in __all__:
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
