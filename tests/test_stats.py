"""Agreement statistics against published values and known examples."""

import numpy as np
import pytest

from defacebench import stats

# Shrout & Fleiss (1979), Psychol Bull 86:420, Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


@pytest.mark.parametrize("kind, published", [("ICC(1,1)", 0.17), ("ICC(A,1)", 0.29), ("ICC(C,1)", 0.71)])
def test_icc_matches_shrout_fleiss_table(kind, published):
    result = stats.icc_matrix(SHROUT_FLEISS, kind)
    assert round(result["icc"], 2) == published
    assert result["ci_low"] < result["icc"] < result["ci_high"]
    # an independent implementation agrees to numerical precision
    assert result["icc"] == pytest.approx(stats.icc_pingouin(SHROUT_FLEISS, kind), abs=1e-9)


def test_icc_confidence_intervals_match_pingouin_rounding():
    # pingouin 0.7 reports CI95 rounded to 2 decimals: [-0.13, 0.72], [0.02, 0.76], [0.34, 0.95]
    expected = {"ICC(1,1)": (-0.13, 0.72), "ICC(A,1)": (0.02, 0.76), "ICC(C,1)": (0.34, 0.95)}
    for kind, (low, high) in expected.items():
        result = stats.icc_matrix(SHROUT_FLEISS, kind)
        assert (round(result["ci_low"], 2), round(result["ci_high"], 2)) == (low, high), kind


def test_absolute_agreement_penalises_a_systematic_shift_consistency_does_not():
    rng = np.random.default_rng(0)
    full = rng.normal(1500, 60, 40)
    shifted = full + 50 + rng.normal(0, 5, 40)
    assert stats.icc(full, shifted, "ICC(C,1)")["icc"] > 0.98
    assert stats.icc(full, shifted, "ICC(A,1)")["icc"] < 0.7


def test_small_n_and_constant_data_give_nan_with_a_note():
    one = stats.icc([1500.0], [1490.0])
    assert np.isnan(one["icc"]) and "at least 2" in one["note"]
    constant = stats.icc([5.0, 5.0, 5.0], [5.0, 5.0, 5.0])
    assert np.isnan(constant["icc"]) and "constant" in constant["note"]
    assert "zero" in stats.wilcoxon([1.0, 2.0], [1.0, 2.0])["note"]


def test_paired_t_and_bland_altman_on_known_numbers():
    full = np.array([10.0, 12.0, 14.0, 16.0])
    defaced = full + np.array([1.0, 2.0, 3.0, 2.0])
    t = stats.paired_t(full, defaced)
    # differences 1,2,3,2: mean 2, sd sqrt(2/3); t = 2 / (sd / 2)
    assert t["mean_diff"] == 2.0 and t["df"] == 3
    assert t["t"] == pytest.approx(2 / (np.sqrt(2 / 3) / 2))
    ba = stats.bland_altman(full, defaced)
    assert ba["bias"] == 2.0
    assert ba["loa_high"] - ba["loa_low"] == pytest.approx(2 * 1.96 * np.sqrt(2 / 3))


def test_mcnemar_exact():
    # 0 failures on full images, 6 of 10 on defaced ones: p = 2 * 0.5**6
    full = np.zeros(10, bool)
    defaced = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    result = stats.mcnemar_exact(full, defaced)
    assert (result["b"], result["c"]) == (0, 6)
    assert result["pval"] == pytest.approx(2 * 0.5**6)
    assert stats.mcnemar_exact(full, full)["pval"] == 1.0
