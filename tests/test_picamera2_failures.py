"""picamera2's failures at the camera boundary, each one line with its fix (issue 20, item 4):
import-time failures of any kind (the numpy ABI clash is a ValueError), a camera libcamera does
not list, a refused input-tensor fd, an unreadable injection comparison frame; and the fake
(tests/fakes/picamera2_fake.py) handing ``CnnInputTensor`` over as libcamera does."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from picamera2_fake import FakeSensor, make_picamera2  # noqa: E402

from imx500_picosam.cli import main
from imx500_picosam.errors import PicosamError
from imx500_picosam.runtime import IMX500Backend, Session
from imx500_picosam.runtime.imx500 import import_picamera2, open_camera
from imx500_picosam.runtime.injection import OnCameraMethod, import_injection_api
from test_runtime_injection import crops, network

BOX = (500, 300, 260, 220)
ABI_CLASH = ("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, "
             "got 88 from PyObject")


def one_line(error) -> str:
    text = str(error.value if hasattr(error, "value") else error)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- import-time failures ---------------------------------------------------------------------

@pytest.fixture
def broken_picamera2(tmp_path, monkeypatch):
    """A picamera2 whose import fails as the given exception (as apt's does beside numpy 2)."""

    def install(raise_line: str):
        package = tmp_path / "site" / "picamera2"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(raise_line + "\n")
        for name in [n for n in sys.modules if n == "picamera2" or n.startswith("picamera2.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))

    return install


@pytest.mark.parametrize("importer", [import_picamera2, import_injection_api])
def test_numpy_abi_clash_at_import_is_one_line_with_its_fix(broken_picamera2, importer):
    broken_picamera2(f"raise ValueError({ABI_CLASH!r})")
    with pytest.raises(PicosamError) as caught:
        importer()
    text = one_line(caught)
    assert "numpy.dtype size changed" in text and "shadows the numpy apt's picamera2 was built against" in text
    assert "pip uninstall -y numpy" in text


def test_numpy2_import_error_is_the_clash_not_a_missing_package(broken_picamera2):
    broken_picamera2('raise ImportError("numpy.core.multiarray failed to import")')
    text = one_line(pytest.raises(PicosamError, import_picamera2).value)
    assert "pip uninstall -y numpy" in text and "not available" not in text


def test_any_other_import_failure_is_one_line_with_a_reinstall(broken_picamera2):
    broken_picamera2('raise OSError("libcamera.so.0.3: cannot open shared object file")')
    text = one_line(pytest.raises(PicosamError, import_picamera2).value)
    assert "OSError: libcamera.so.0.3" in text and "apt install --reinstall python3-picamera2" in text


def test_missing_picamera2_says_where_it_comes_from(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ModuleNotFoundError
    text = one_line(pytest.raises(PicosamError, import_picamera2).value)
    assert "picamera2 is not available" in text and "sudo apt install imx500-all python3-picamera2" in text
    assert "--emulate" in text


def test_demo_rpk_with_the_clash_ends_in_one_line_not_a_traceback(broken_picamera2, picosam_rpk, tmp_path):
    broken_picamera2(f"raise ValueError({ABI_CLASH!r})")
    result = CliRunner().invoke(main, ["demo", "--rpk", str(picosam_rpk), "--headless", "--frames", "1",
                                       "--box", "10,10,50,50", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert "Traceback" not in result.output and "pip uninstall -y numpy" in result.output
    assert not isinstance(result.exception, ValueError)


# -- a camera libcamera does not list ----------------------------------------------------------

def test_a_camera_libcamera_does_not_list_is_one_line(picosam_rpk, scene):
    api = make_picamera2(FakeSensor(scene, network), camera_listed=False)
    backend = IMX500Backend(picosam_rpk, picamera2=api, log=lambda line: None)
    with pytest.raises(PicosamError) as caught:
        Session(backend, boxes=[BOX]).start()
    text = one_line(caught)
    assert "network.rpk" in text and "libcamera does not list the camera" in text
    assert "rpicam-hello --list-cameras" in text
    with pytest.raises(PicosamError, match="libcamera does not list the camera"):
        OnCameraMethod(picosam_rpk, api=make_picamera2(FakeSensor(scene, network), camera_listed=False))


def test_picamera2_number_not_listed_or_busy_is_one_line(picosam_rpk):
    def raising(error):
        def constructor(camera_num):
            raise error
        return SimpleNamespace(Picamera2=constructor)

    text = one_line(pytest.raises(PicosamError, open_camera, raising(IndexError("list index out of range")), 0,
                                  picosam_rpk).value)
    assert "libcamera lists no camera 0" in text
    busy = RuntimeError("Camera __init__ sequence did not complete.")
    busy.__cause__ = RuntimeError("Failed to acquire camera: Device or resource busy")
    text = one_line(pytest.raises(PicosamError, open_camera, raising(busy), 0, picosam_rpk).value)
    assert "Device or resource busy" in text and "another program using the camera" in text


# -- tensor injection's edges ----------------------------------------------------------------

def test_a_refused_tensor_fd_is_one_line_naming_the_overlay(picosam_rpk):
    api = make_picamera2(FakeSensor(np.zeros((30, 40, 3), np.uint8), network), tensor_fd_accepted=False)
    with OnCameraMethod(picosam_rpk, api=api) as method, pytest.raises(PicosamError) as caught:
        method.predict_crops(crops(1))
    text = one_line(caught)
    assert "refused the injected tensor" in text and "Unable to set input tensor fd" in text
    assert "dtoverlay=imx500,cam0,bypass-cache" in text


def test_an_unreadable_comparison_frame_is_said_as_such(picosam_rpk, capsys):
    api = make_picamera2(FakeSensor(np.zeros((30, 40, 3), np.uint8), network), cmp_frm_readable=False)
    with OnCameraMethod(picosam_rpk, api=api) as method, pytest.raises(PicosamError) as caught:
        method.predict_crops(crops(1))
    text = one_line(caught)
    assert "could not read the injection comparison frame" in text and "get_injection_cmp_frm() gave 0" in text
    assert "another program" not in text  # not the frame-count mismatch's question
    assert "Unable to get injection comparison frame" in capsys.readouterr().out  # what picamera2 printed


# -- the fake as libcamera and picamera2 are --------------------------------------------------

def test_the_input_tensor_is_a_tuple_of_ints_and_bytes_are_refused(picosam_rpk, scene):
    sensor = FakeSensor(scene, network)
    api = make_picamera2(sensor)
    imx500 = api.IMX500(str(picosam_rpk))
    camera = api.Picamera2(imx500.camera_num)
    camera.start(camera.create_preview_configuration(main={"size": (640, 480), "format": "RGB888"},
                                                     controls={"CnnEnableInputTensor": True}))
    tensor = camera.capture_request().get_metadata()["CnnInputTensor"]
    assert isinstance(tensor, tuple) and len(tensor) == 3 * 96 * 96 and all(isinstance(v, int) for v in tensor[:10])
    assert imx500.input_tensor_image(tensor).shape == (96, 96, 3)
    with pytest.raises(ValueError):  # picamera2's np.array(input_tensor, dtype=np.uint8) on bytes
        imx500.input_tensor_image(bytes(tensor))
    # picamera2 keeps its default divisors whatever the RPK's registers say (its defaults test the
    # wrong dict); the offsets it reads from the RPK
    assert imx500.config["input_tensor"]["div_val"] == [1024, 1024, 1024]
    assert imx500.config["input_tensor"]["div_shift"] == 6


def test_the_smoke_test_on_the_pi_says_the_clash_in_one_line(broken_picamera2):
    from imx500_picosam.deploy import smoke

    broken_picamera2(f"raise ValueError({ABI_CLASH!r})")
    text = one_line(pytest.raises(PicosamError, smoke._import_picamera2).value)
    assert "numpy.dtype size changed" in text and "pip uninstall -y numpy" in text
