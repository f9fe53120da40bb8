"""From a checkpoint to sensor firmware: MCT quantization with the IMX500 TPC (``quantize``),
``imxconv-tf`` (``convert``), ``imx500-package`` (``package``), the whole chain with its report
(``build``), and a checkpoint loaded as the float, quantized or INT8 engine as built
(``engines``). Imports the ground floor and ``model``."""
