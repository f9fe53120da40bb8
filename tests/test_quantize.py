import numpy as np
import pytest

from imx500_picosam.calibration import load_crops
from imx500_picosam.model.checkpoint import initialise_checkpoint, load_model
from imx500_picosam.firmware import quantize
from imx500_picosam.firmware.quantize import QuantizationSettings, quantize_model, quantized_as_built
from imx500_picosam.toolchain import TPC_FOR_CONVERTER, tpc_version_for_converter


def test_tpc_follows_the_converter():
    assert tpc_version_for_converter("3.19.2") == "5.0"
    assert set(TPC_FOR_CONVERTER) >= {"3.17", "3.18", "3.19"}


@pytest.mark.slow
def test_gptq_runs_and_stays_close_to_float(tmp_path):
    model = load_model(initialise_checkpoint(tmp_path / "g.weights.h5", seed=2))
    images = load_crops("calibration", rule="square").images[:16]
    quantized = quantize_model(model, images, gptq=True, gptq_epochs=1)
    probe = load_crops("held_out", rule="square").images[:4]
    f, q = model.predict(probe, verbose=0), quantized.predict(probe, verbose=0)
    assert not np.array_equal(f, q)
    assert np.corrcoef(f.ravel(), q.ravel())[0, 1] > 0.95


def test_the_quantized_model_comes_back_from_the_cache_unchanged(quantized_picosam3, monkeypatch):
    checkpoint = quantized_picosam3.checkpoint

    def must_not_quantize(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(quantize, "quantize_model", must_not_quantize)
    again = quantized_as_built(checkpoint)
    assert again.from_cache and again.result.tpc_version == QuantizationSettings().resolved().tpc_version
    crops = load_crops("held_out", rule="square").images
    np.testing.assert_array_equal(again.model.predict(crops, verbose=0),
                                  quantized_picosam3.keras.predict(crops, verbose=0))


def test_the_cache_key_follows_weights_settings_and_calibration(quantized_picosam3, tmp_path, monkeypatch):
    checkpoint = quantized_picosam3.checkpoint
    default = QuantizationSettings().resolved()
    path = quantize._cache_path(checkpoint, default, ".keras")
    assert path == quantize._cache_path(checkpoint, QuantizationSettings(gptq_epochs=9).resolved(), ".keras")  # PTQ
    assert path != quantize._cache_path(checkpoint, QuantizationSettings(gptq=True).resolved(), ".keras")
    assert path != quantize._cache_path(checkpoint, QuantizationSettings(tpc_version="4.0"), ".keras")
    other = initialise_checkpoint(tmp_path / "other.weights.h5", seed=4)
    assert path != quantize._cache_path(other, default, ".keras")
    monkeypatch.setattr(quantize, "crops_fingerprint", lambda role, rule: "other photos")
    assert path != quantize._cache_path(checkpoint, default, ".keras")
