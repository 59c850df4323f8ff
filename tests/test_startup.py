"""Start-up (issue 17): --device auto decides without importing torch where no GPU driver
is installed; TV-L1's parameters live in one module, checked once per run, and the native
backend does not import the torch backend."""
import os
import pickle
import subprocess
import sys

import pytest

from flowprep.errors import ConfigError
from flowprep.flow import gpu_driver_present, merge_params
from flowprep.flow.tvl1_params import TVL1_DEFAULTS, TVL1Params, tvl1_params
from synth import translated_frames, write_video


def _python(code, **env):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, **env), timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_gpu_driver_present_reads_the_driver_files(tmp_path, monkeypatch):
    node = tmp_path / "nvidiactl"
    node.write_text("")
    monkeypatch.delenv("FLOWPREP_ASSUME_GPU", raising=False)
    assert gpu_driver_present(paths=[str(node)]) is True
    monkeypatch.setenv("FLOWPREP_ASSUME_GPU", "1")
    assert gpu_driver_present(paths=[]) is True


@pytest.mark.skipif(gpu_driver_present(), reason="this machine has a GPU driver: torch decides")
def test_extract_with_device_auto_does_not_import_torch_without_a_gpu_driver(tmp_path):
    tiny = write_video(str(tmp_path / "tiny.mp4"), translated_frames(2, 32, 32, 1.0, 0.0),
                       codec="libx264", pix_fmt="yuv420p")
    code = ("import sys\nfrom flowprep.cli.main import main\n"
            f"sys.argv = ['flowprep', 'extract', {tiny!r}, '-o', {str(tmp_path / 'o')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    out = _python(code, FLOWPREP_ASSUME_GPU="0").splitlines()
    assert out[0].startswith("1 published") and out[-1] == "False", out
    # what every run did before: torch imported to learn that there is no GPU
    pytest.importorskip("torch")
    code = "import sys\nfrom flowprep.flow import resolve\nresolve('tvl1')\nprint('torch' in sys.modules)"
    assert _python(code, FLOWPREP_ASSUME_GPU="1") == "True"
    assert _python(code, FLOWPREP_ASSUME_GPU="0") == "False"


def test_the_native_backend_does_not_import_the_torch_backend():
    code = ("import sys\nimport flowprep.flow.native_tvl1, flowprep.flow.opencv_cpu\n"
            "print('flowprep.flow.torch_tvl1' in sys.modules, 'torch' in sys.modules)")
    assert _python(code) == "False False"


def test_tvl1_params_are_checked_once_and_kept_checked():
    p = merge_params("tvl1", {"warps": "3"})  # the run's one check, in the parent
    assert isinstance(p, TVL1Params) and p == dict(TVL1_DEFAULTS, warps=3)
    assert tvl1_params(p) is p  # the backends take it as it is
    again = pickle.loads(pickle.dumps(p))  # what a worker process receives in the Job
    assert isinstance(again, TVL1Params) and tvl1_params(again) is again
    from flowprep.flow.native_tvl1 import NativeTVL1, native_available
    from flowprep.flow.opencv_cpu import OpenCVTVL1
    assert OpenCVTVL1(p).params == p
    if native_available():
        assert NativeTVL1(p).params is p
    # a plain dict given to a backend directly is checked there
    with pytest.raises(ConfigError, match="'tau' must be in"):
        OpenCVTVL1(dict(TVL1_DEFAULTS, tau=-1.0))
    with pytest.raises(ConfigError, match="unknown TV-L1 parameter 'wraps'"):
        tvl1_params({"wraps": 2})
