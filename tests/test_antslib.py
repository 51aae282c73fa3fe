"""The lean antspyx import: what is held back, and that held-back names still resolve."""

import subprocess
import sys

LEAN_THEN_FULL = """
import sys
from defacebench.antslib import DEFERRED_SUBPACKAGES, import_ants
ants = import_ants()
held_back = [name for name in DEFERRED_SUBPACKAGES if f"ants.{name}" in sys.modules]
assert not held_back, held_back
assert callable(ants.registration) and callable(ants.n4_bias_field_correction)
plot = ants.plot                                           # a held-back name resolves on first use
assert "ants.plotting" in sys.modules and plot is sys.modules["ants.plotting"].plot
assert ants.quantile is sys.modules["ants.math"].quantile
import ants as plain
assert plain is ants
"""


def test_lean_import_holds_back_unused_subpackages_and_resolves_them_on_use():
    result = subprocess.run([sys.executable, "-c", LEAN_THEN_FULL], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
