import json
import re
import stat
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from imx500_picosam.firmware import convert
from imx500_picosam.errors import PicosamError

# Excerpts of what imxconv-tf 3.19.2 wrote for PicoSAM3 with --report-size-unit B.
MEMORY_REPORT = {
    "Memory Report": {
        "Name": "picosam3",
        "Runtime Memory Physical Size": "2403424B",
        "Model Memory Physical Size": "1438848B",
        "Reserved Memory": "1024B",
        "Memory Usage": "3843296B",
        "Total Memory Available On Chip": "8388480B",
        "Memory Utilization": "46%",
        "Fit In Chip": True,
    }
}
DNN_PARAMS = textwrap.dedent(
    """\
    <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
    <dnnParams><networks><network name="picosam3" ordinal="0" type="">
    <inputTensors>
      <inputTensor persistency="1" ordinal="0" name="image:0" numOfDimensions="3" bitsPerElement="8" shift="0" scale="0.00390625" format="unsigned">
        <dimensions>
          <dimension size="96" serializationOrder="1" ordinal="0" padding="0"/>
          <dimension size="96" serializationOrder="0" ordinal="1" padding="0"/>
          <dimension size="3" serializationOrder="2" ordinal="2" padding="0"/>
        </dimensions>
      </inputTensor>
    </inputTensors>
    <outputTensors>
      <outputTensor ordinal="0" name="out:0" numOfDimensions="3" bitsPerElement="8" shift="0" scale="1.2207031E-4" format="signed">
        <dimensions>
          <dimension size="1" serializationOrder="2" ordinal="2" padding="0"/>
          <dimension size="96" serializationOrder="0" ordinal="0" padding="0"/>
          <dimension size="96" serializationOrder="1" ordinal="1" padding="0"/>
        </dimensions>
      </outputTensor>
    </outputTensors>
    </network></networks></dnnParams>
    """
)


@pytest.mark.parametrize(
    "text, expected",
    [("3843296B", 3843296), ("3.67MB", round(3.67 * 1024 * 1024)), ("31.00KB", 31744), ("8.00MB", 8388608)],
)
def test_parse_size(text, expected):
    assert convert.parse_size(text) == expected


def test_parse_memory_report(tmp_path):
    path = tmp_path / "picosam3_MemoryReport.json"
    path.write_text(json.dumps(MEMORY_REPORT))
    report = convert.parse_memory_report(path)
    assert report.fit_in_chip is True
    assert report.memory_usage_mb == pytest.approx(3.665, abs=1e-3)
    assert report.total_on_chip_mb == pytest.approx(8.0, abs=1e-3)


def test_unreadable_memory_report_is_one_line(tmp_path):
    path = tmp_path / "x_MemoryReport.json"
    path.write_text('{"Memory Report": {}}')
    with pytest.raises(PicosamError, match="x_MemoryReport.json: unreadable converter memory report"):
        convert.parse_memory_report(path)


def test_parse_dnn_params_orders_dimensions_by_ordinal(tmp_path):
    path = tmp_path / "dnnParams.xml"
    path.write_text(DNN_PARAMS)
    tensors = convert.parse_dnn_params(path)
    (tensor_in,), (tensor_out,) = tensors["inputs"], tensors["outputs"]
    assert tensor_in.shape == [96, 96, 3] and tensor_in.scale == 1 / 256 and not tensor_in.signed
    assert tensor_out.shape == [96, 96, 1] and tensor_out.signed and tensor_out.bits == 8


def _fake_java(folder, version_line):
    folder.mkdir()
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)


def test_missing_java_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PicosamError) as err:
        convert.require_java()
    assert "needs Java 17" in str(err.value) and "no 'java'" in str(err.value)
    assert "\n" not in str(err.value)


def test_old_java_is_refused(tmp_path, monkeypatch):
    _fake_java(tmp_path / "bin", 'openjdk version "11.0.21" 2023-10-17')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(PicosamError, match="is Java 11"):
        convert.require_java()


def test_java_versions_are_read(tmp_path, monkeypatch):
    _fake_java(tmp_path / "bin", 'openjdk version "17.0.15" 2025-04-15')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert convert.require_java() == 17


def test_failure_line_prefers_the_usop_line():
    log = "INFO : ok\n2026 ERROR : CODE: [USOP] The network contains unsupported ops: a.B [/x/logger.py:185]\n"
    assert convert._failure_line(log) == "unsupported ops: The network contains unsupported ops: a.B"


@pytest.mark.slow
def test_real_converter_refuses_a_normalization_layer(tmp_path):
    """A real MCT export of a graph holding Keras Normalization, through the real imxconv-tf."""
    import model_compression_toolkit as mct
    from edgemdt_tpc import get_target_platform_capabilities

    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.05, 0.05, 0.05])(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(4, 3, padding="same")(x))
    data = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float32)
    tpc = get_target_platform_capabilities(tpc_version="5.0", device_type="imx500")
    quantized, _ = mct.ptq.keras_post_training_quantization(model, lambda: iter([[data]]), target_platform_capabilities=tpc)
    exported = tmp_path / "normalized.keras"
    mct.exporter.keras_export_model(model=quantized, save_model_path=str(exported))

    with pytest.raises(PicosamError) as err:
        convert.convert(exported, tmp_path / "converter")
    message = str(err.value)
    assert "unsupported ops" in message and "Normalization" in message and "\n" not in message
    assert not (tmp_path / "converter").exists()  # no half-written output folder
    assert (tmp_path / "imxconv-tf.log").is_file()  # the full log is kept for the user


def test_a_network_that_does_not_fit_is_refused(tmp_path, monkeypatch):
    """The converter's own verdict decides; a stand-in converter reports Fit In Chip false."""
    report = json.loads(json.dumps(MEMORY_REPORT))
    report["Memory Report"].update({"Memory Usage": "9437184B", "Fit In Chip": False})
    fake = tmp_path / "imxconv-tf"
    fake.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != "-o" ]; do shift; done; out="$2"; mkdir -p "$out"\n'
        f"cat > \"$out/big_MemoryReport.json\" <<'EOF'\n{json.dumps(report)}\nEOF\n"
        'touch "$out/packerOut.zip"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(convert, "find_converter", lambda: str(fake))
    model = tmp_path / "big.keras"
    model.write_bytes(b"")
    with pytest.raises(PicosamError) as err:
        convert.convert(model, tmp_path / "converter")
    assert "does not fit in the IMX500: needs 9.00 MB of 8.00 MB" in str(err.value)
    assert (tmp_path / "big_MemoryReport.json").is_file()
    assert not (tmp_path / "converter").exists()


def test_the_converters_own_output_is_streamed_line_by_line(tmp_path, monkeypatch):
    """`picosam build` shows imxconv-tf's progress as it runs; the log still keeps all of it."""
    fake = tmp_path / "imxconv-tf"
    fake.write_text("#!/bin/sh\necho 'Reading model'\necho ''\necho 'Compiling 50%'\necho 'ERROR : boom' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(convert, "find_converter", lambda: str(fake))
    monkeypatch.setattr(convert, "require_java", lambda: 17)
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    heard = []
    with pytest.raises(PicosamError, match=r"failed on m.keras \(exit 3\): boom"):
        convert.convert(model, tmp_path / "converter", on_line=heard.append)
    assert heard == ["Reading model", "Compiling 50%", "ERROR : boom"]
    assert "Compiling 50%" in (tmp_path / "imxconv-tf.log").read_text()


def test_build_stages_are_announced_as_they_start_and_end():
    from imx500_picosam.firmware.build import STAGES, _Stages

    heard = []
    stage = _Stages(heard.append)
    with stage("quantize"):
        heard.append("inside")
    with pytest.raises(ValueError):
        with stage("convert"):
            raise ValueError
    assert heard[0] == "[3/6] quantize with MCT ..." and heard[1] == "inside"
    assert re.fullmatch(r"\[3/6\] quantize with MCT: done in \d+\.\d s", heard[2])
    assert heard[3] == "[5/6] convert with imxconv-tf ..." and len(heard) == 4  # a failed stage is not "done"
    assert set(stage.seconds) == {"quantize"} and [key for key, _ in STAGES][-1] == "package"
