import numpy as np
import pytest

from imx500_picosam.calibration import load_crops
from imx500_picosam.checkpoint import initialise_checkpoint, load_model
from imx500_picosam.quantize import quantize_model
from imx500_picosam.toolchain import TPC_FOR_CONVERTER, tpc_version_for_converter


def test_tpc_follows_the_converter():
    assert tpc_version_for_converter("3.19.2") == "5.0"
    assert set(TPC_FOR_CONVERTER) >= {"3.17", "3.18", "3.19"}


@pytest.mark.slow
def test_gptq_runs_and_stays_close_to_float(tmp_path):
    model = load_model(initialise_checkpoint(tmp_path / "g.weights.h5", seed=2))
    images = load_crops("calibration").images[:16]
    quantized = quantize_model(model, images, gptq=True, gptq_epochs=1)
    probe = load_crops("held_out").images[:4]
    f, q = model.predict(probe, verbose=0), quantized.predict(probe, verbose=0)
    assert not np.array_equal(f, q)
    assert np.corrcoef(f.ravel(), q.ravel())[0, 1] > 0.95
