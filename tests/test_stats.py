"""Agreement statistics against published values, independent implementations and known examples."""

import numpy as np
import pytest
from scipy import stats as sps

from defacebench import stats

# Shrout & Fleiss (1979), Psychol Bull 86:420, Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])

# Reported by Shrout & Fleiss (1979) for these data: ICC(1,1) .17, ICC(2,1) = ICC(A,1) .29, ICC(3,1) = ICC(C,1) .71.
PUBLISHED = [("ICC(1,1)", 0.17), ("ICC(A,1)", 0.29), ("ICC(C,1)", 0.71)]


@pytest.mark.parametrize("engine", stats.ICC_ENGINES)
@pytest.mark.parametrize("kind, published", PUBLISHED)
def test_icc_matches_shrout_fleiss_table(kind, published, engine):
    result = stats.icc_matrix(SHROUT_FLEISS, kind, engine=engine)
    assert round(result["icc"], 2) == published
    assert result["ci_low"] < result["icc"] < result["ci_high"]
    assert result["n"] == 6 and result["engine"] == engine and result["note"] == ""


@pytest.mark.parametrize("kind", stats.ICC_KINDS)
def test_pingouin_and_closed_form_agree(kind):
    rng = np.random.default_rng(3)
    subject = rng.normal(1500, 80, 25)
    two_raters = np.column_stack([subject + rng.normal(0, 15, 25), subject + 12 + rng.normal(0, 15, 25)])
    for ratings in (SHROUT_FLEISS, two_raters):
        ping = stats.icc_matrix(ratings, kind, engine="pingouin")
        closed = stats.icc_matrix(ratings, kind, engine="closed-form")
        for key in ("icc", "ci_low", "ci_high", "F", "df1", "df2", "pval"):
            assert closed[key] == pytest.approx(ping[key], rel=1e-9, abs=1e-12), key


def test_icc_confidence_intervals_match_pingouin_published_rounding():
    # pingouin 0.7 prints CI95 rounded to 2 decimals: [-0.13, 0.72], [0.02, 0.76], [0.34, 0.95]
    expected = {"ICC(1,1)": (-0.13, 0.72), "ICC(A,1)": (0.02, 0.76), "ICC(C,1)": (0.34, 0.95)}
    for kind, (low, high) in expected.items():
        result = stats.icc_matrix(SHROUT_FLEISS, kind, engine="closed-form")
        assert (round(result["ci_low"], 2), round(result["ci_high"], 2)) == (low, high), kind
        # our pingouin call switches the rounding off (more than 2 decimals survive)
        assert stats.icc_matrix(SHROUT_FLEISS, kind)["ci_low"] != round(result["ci_low"], 2)


def test_icc_full_vs_defaced_is_the_two_rater_case():
    full, defaced = [1500.0, 1420.0, 1610.0, 1555.0], [1490.0, 1431.0, 1600.0, 1560.0]
    pair = stats.icc(full, defaced, "ICC(A,1)")
    matrix = stats.icc_matrix(np.column_stack([full, defaced]), "ICC(A,1)")
    assert pair["icc"] == matrix["icc"] and pair["df2"] == 3


def test_two_complete_pairs_fall_back_to_the_closed_form():
    # pingouin 0.7 refuses fewer than 5 ratings; 2 subjects x (full, defaced) is a real tiny-study case
    result = stats.icc([1500.0, 1420.0], [1490.0, 1431.0])
    assert result["engine"] == "closed-form" and "pingouin" in result["note"]
    assert result["icc"] == stats.icc([1500.0, 1420.0], [1490.0, 1431.0], engine="closed-form")["icc"]
    assert np.isfinite(result["icc"]) and result["df1"] == 1


def test_absolute_agreement_penalises_a_systematic_shift_consistency_does_not():
    rng = np.random.default_rng(0)
    full = rng.normal(1500, 60, 40)
    shifted = full + 50 + rng.normal(0, 5, 40)
    assert stats.icc(full, shifted, "ICC(C,1)")["icc"] > 0.98
    assert stats.icc(full, shifted, "ICC(A,1)")["icc"] < 0.7


@pytest.mark.parametrize("engine", stats.ICC_ENGINES)
def test_icc_degenerate_data_give_values_or_nan_with_a_note(engine):
    one = stats.icc([1500.0], [1490.0], engine=engine)
    assert np.isnan(one["icc"]) and "at least 2" in one["note"] and one["n"] == 1
    constant = stats.icc([5.0, 5.0, 5.0], [5.0, 5.0, 5.0], engine=engine)
    assert np.isnan(constant["icc"]) and "constant" in constant["note"]
    same_mean = stats.icc([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], engine=engine)
    assert np.isnan(same_mean["icc"]) and "between cases" in same_mean["note"]
    # defacing changed nothing: perfect agreement, not NaN
    identical = stats.icc([1400.0, 1500.0, 1620.0], [1400.0, 1500.0, 1620.0], engine=engine)
    assert (identical["icc"], identical["ci_low"], identical["ci_high"]) == (1.0, 1.0, 1.0)
    assert "identical" in identical["note"]
    # an exact constant offset: perfect consistency, imperfect absolute agreement
    full, offset = np.array([1400.0, 1500.0, 1620.0, 1550.0]), np.array([1410.0, 1510.0, 1630.0, 1560.0])
    assert stats.icc(full, offset, "ICC(C,1)", engine=engine)["icc"] == 1.0
    absolute = stats.icc(full, offset, "ICC(A,1)", engine=engine)
    assert 0.9 < absolute["icc"] < 1.0 and absolute["ci_low"] < absolute["icc"] < absolute["ci_high"]


def test_incomplete_pairs_are_dropped_and_counted():
    full = [1500.0, np.nan, 1610.0, 1555.0, 1480.0]
    defaced = [1490.0, 1431.0, 1600.0, np.nan, 1470.0]
    result = stats.icc(full, defaced)
    assert result["n"] == 3 and "2 incomplete" in result["note"]
    assert result["icc"] == pytest.approx(stats.icc([1500, 1610, 1480], [1490, 1600, 1470])["icc"])
    assert stats.paired_t(full, defaced)["n"] == 3
    with pytest.raises(ValueError):
        stats.icc([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        stats.icc_matrix(SHROUT_FLEISS, "ICC(2,k)")


def test_paired_t_matches_scipy_and_pingouin():
    import pingouin as pg

    rng = np.random.default_rng(5)
    full = rng.normal(1500, 50, 12)
    defaced = full + rng.normal(3, 6, 12)
    result = stats.paired_t(full, defaced)
    reference = sps.ttest_rel(defaced, full)
    assert result["t"] == pytest.approx(reference.statistic) and result["pval"] == pytest.approx(reference.pvalue)
    ping = pg.ttest(defaced, full, paired=True)  # pingouin 0.7 columns: T, dof, p_val, CI95
    assert result["t"] == pytest.approx(float(ping["T"].iloc[0]))
    assert result["pval"] == pytest.approx(float(ping["p_val"].iloc[0]))
    assert result["df"] == 11 and result["ci_low"] < result["mean_diff"] < result["ci_high"]


def test_paired_t_and_bland_altman_on_known_numbers():
    full = np.array([10.0, 12.0, 14.0, 16.0])
    defaced = full + np.array([1.0, 2.0, 3.0, 2.0])
    t = stats.paired_t(full, defaced)
    # differences 1, 2, 3, 2: mean 2, sd sqrt(2/3); t = 2 / (sd / sqrt(4))
    assert t["mean_diff"] == 2.0 and t["df"] == 3
    assert t["t"] == pytest.approx(2 / (np.sqrt(2 / 3) / 2))
    half = sps.t.ppf(0.975, 3) * np.sqrt(2 / 3) / 2
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((2 - half, 2 + half))
    ba = stats.bland_altman(full, defaced)
    assert ba["bias"] == 2.0 and ba["sd"] == pytest.approx(np.sqrt(2 / 3))
    assert ba["loa_low"] == pytest.approx(2 - 1.96 * np.sqrt(2 / 3))
    assert ba["loa_high"] == pytest.approx(2 + 1.96 * np.sqrt(2 / 3))


def test_small_n_guards_return_nan_with_reason():
    for result in (stats.paired_t([1.0], [2.0]), stats.bland_altman([1.0], [2.0]), stats.wilcoxon([1.0], [2.0])):
        assert all(np.isnan(v) for k, v in result.items() if k not in ("n", "note"))
        assert "at least 2" in result["note"]
    equal = stats.paired_t([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert np.isnan(equal["t"]) and equal["mean_diff"] == 1.0 and "equal" in equal["note"]


def test_wilcoxon_known_exact_p_and_all_zero_differences():
    # five positive differences: W = 0, exact two-sided p = 2 / 2**5
    result = stats.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0])
    assert result["statistic"] == 0.0 and result["pval"] == pytest.approx(2 / 32)
    zero = stats.wilcoxon([1.0, 2.0], [1.0, 2.0])
    assert np.isnan(zero["pval"]) and "zero" in zero["note"]
    assert "1 zero difference" in stats.wilcoxon([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 5.0, 7.0])["note"]


def test_mcnemar_exact():
    # 0 failures on full images, 6 of 10 on defaced ones: p = 2 * 0.5**6
    full = np.zeros(10, bool)
    defaced = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    result = stats.mcnemar_exact(full, defaced)
    assert (result["b"], result["c"]) == (0, 6)
    assert result["pval"] == pytest.approx(2 * 0.5**6)
    # b = 1, c = 6: p = 2 * P(X <= 1 | 7, 1/2) = 2 * 8 / 128; concordant failures do not count
    full = np.array([1, 0, 0, 0, 0, 0, 0, 1, 0], bool)
    defaced = np.array([0, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    result = stats.mcnemar_exact(full, defaced)
    assert (result["b"], result["c"]) == (1, 6) and result["pval"] == pytest.approx(0.125)
    none = stats.mcnemar_exact(full, full)
    assert none["pval"] == 1.0 and (none["b"], none["c"]) == (0, 0)
    with pytest.raises(ValueError):
        stats.mcnemar_exact([True], [True, False])
