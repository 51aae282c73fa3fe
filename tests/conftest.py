from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_BIDS = REPO.parent / "shared" / "data" / "real-bids"


@pytest.fixture(scope="session")
def real_bids():
    """The shared real sample scans; tests using them skip when the folder is absent."""
    if not (REAL_BIDS / "dataset_description.json").exists():
        pytest.skip(f"real sample scans not found at {REAL_BIDS}")
    return REAL_BIDS
