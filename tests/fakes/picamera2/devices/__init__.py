from .imx500 import IMX500
