"""The network and its files: PicoSAM's Keras definition (``network``), checkpoints and their
sidecars (``checkpoint``), the one front door that turns whatever the user names into a
checkpoint (``resolve``), the authors' ``.pt`` import (``import_weights``, ``torch_file``) and
the engines that run a model on ROI crops (``runners``). Imports only the ground floor."""
