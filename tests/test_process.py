"""Process settings of a workflow job (defacebench.process)."""

import platform

import numpy as np
import pytest

from defacebench.process import keep_freed_memory


def test_keep_freed_memory_applies_on_glibc_and_arrays_still_work():
    applied = keep_freed_memory()
    assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    # large blocks now come from the heap: allocate, free and reuse a few head-sized arrays
    for _ in range(3):
        a = np.ones((256, 256, 160), np.float32)
        assert float(a.sum()) == 256 * 256 * 160


@pytest.mark.parametrize("value", [0, 2**31])
def test_keep_freed_memory_rejects_thresholds_outside_a_c_int(value):
    if not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"):
        pytest.skip("mallopt is glibc's")
    with pytest.raises(ValueError):
        keep_freed_memory(mmap_threshold=value)
