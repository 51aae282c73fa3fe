import os
from pathlib import Path

import pytest

from defacebench.process import keep_freed_memory

# as in every workflow job: large arrays are reused rather than mapped afresh (defacebench.process)
keep_freed_memory()

REPO = Path(__file__).resolve().parents[1]
REAL_BIDS = REPO.parent / "shared" / "data" / "real-bids"


@pytest.fixture(scope="session")
def real_bids():
    """The shared real sample scans; tests using them skip when the folder is absent."""
    if not (REAL_BIDS / "dataset_description.json").exists():
        pytest.skip(f"real sample scans not found at {REAL_BIDS}")
    return REAL_BIDS


#: Variables an analysis sets for its own threads (defacebench.runner.set_threads); in a job process
#: that is right, in the one pytest process it would leak into later tests and their subprocesses.
THREAD_LIMITS = (
    "OMP_NUM_THREADS",
    "OMP_THREAD_LIMIT",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    "DEFACEBENCH_THREADS",
    "ANTS_RANDOM_SEED",
)


@pytest.fixture(autouse=True)
def _restore_thread_limits():
    saved = {name: os.environ.get(name) for name in THREAD_LIMITS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def validator():
    """The official BIDS validator's executable (``defacebench.sharing.find_validator``); skips, saying why, without it."""
    from defacebench.sharing import find_validator

    executable, why = find_validator()
    if executable is None:
        pytest.skip(why)
    return executable
