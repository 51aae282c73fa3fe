"""Provins et al. (2025) from its published data: the ratings' mixed models and agreement, the IQMs,
the published values beside ours, bad input files, and the statistics on synthetic data with known answers."""

from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from workflow_runs import snakemake
import yaml

from defacebench import stats
from defacebench.quality import lmm, paired, provins2025, published_iqms, ratings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "provins2025"
RATINGS = DATA / "S1_Data.tsv"
IQMS = DATA / "S2_Data.csv"
EXPERIENCE = DATA / "rater_experience.json"

# fewer resamples than the study's 10000: the tests check the machinery, the study the figures
N_BOOT = 2000


@pytest.fixture(scope="module")
def published_data():
    if not (RATINGS.exists() and IQMS.exists()):
        pytest.skip(f"the published data of Provins et al. (2025) are not at {DATA}")
    return DATA


@pytest.fixture(scope="module")
def published():
    return provins2025.load_published()


@pytest.fixture(scope="module")
def study_tables(published_data, published, tmp_path_factory):
    """The study's tables written once per session (the mixed models are the slow part)."""
    out = tmp_path_factory.mktemp("provins2025")
    lmm_table = provins2025.write_ratings_lmm(RATINGS, out, published)
    agreement = provins2025.write_ratings_agreement(
        RATINGS, out, EXPERIENCE, published, sd_multiplier=2.0, n_boot=N_BOOT, seed=2025
    )
    iqm_agreement, multivariate = provins2025.write_iqm_tables(
        IQMS, out, published, n_boot=N_BOOT, n_perm=N_BOOT, seed=2025
    )
    claims = provins2025.write_claims(
        {name: out / f"{name}.tsv" for name in ("ratings_lmm", "ratings_agreement", "iqm_agreement")}, out, published
    )
    return {
        "dir": out,
        "ratings_lmm": lmm_table,
        "ratings_agreement": agreement,
        "iqm_agreement": iqm_agreement,
        "iqm_multivariate": multivariate,
        "claims": claims,
    }


def _row(table, **where):
    hit = table
    for column, value in where.items():
        hit = hit[hit[column] == value]
    assert len(hit) == 1, where
    return hit.iloc[0]


# --------------------------------------------------------------------------- the published data


def test_mixed_model_reproduces_the_published_test(study_tables):
    row = _row(study_tables["ratings_lmm"], model="all_raters", term="defaced")
    assert row["n_ratings"] == 1480 and row["n_subjects"] == 185 and row["n_raters"] == 4  # first-rating rule
    assert round(row["estimate"], 3) == 0.045
    assert round(row["chi2"], 2) == 6.28 and row["df"] == 1
    assert round(row["p"], 3) == 0.012
    assert row["published_estimate"] == 0.045 and row["published_chi2"] == 6.28 and row["published_p"] == 0.012
    assert row["converged"]


def test_mixed_model_subsets(study_tables):
    table = study_tables["ratings_lmm"]
    models = set(table["model"])
    assert {"all_raters", "poor_nondefaced"} <= models
    assert {f"without_rater_0{i}" for i in range(1, 5)} <= models and {
        f"only_rater_0{i}" for i in range(1, 5)
    } <= models
    assert (_row(table, model="without_rater_01", term="defaced")["n_ratings"]) == 1110
    alone = _row(table, model="only_rater_01", term="defaced")
    assert alone["n_raters"] == 1 and np.isnan(alone["var_rater"])
    # images rated poor with the face visible are rated much higher defaced (the paper's Fig 2)
    assert _row(table, model="poor_nondefaced", term="defaced")["estimate"] > 0.2


def test_agreement_reproduces_the_published_table(study_tables, published):
    table = study_tables["ratings_agreement"]
    pooled = _row(table, rater="pooled")
    assert pooled["n"] == 900
    assert round(pooled["bias"], 3) == -0.051
    assert round(pooled["icc"], 3) == 0.694
    # every published cell of the parametric analysis, at the decimals printed
    spec = published["tables"]["ratings_agreement"]
    for rater, values in spec["rows"].items():
        ours = _row(table, rater=rater)
        for column, value in zip(spec["columns"], values):
            if column.endswith("_bootstrap"):
                assert abs(ours[column] - value) < 0.01, (rater, column)  # a random resampling: theirs and ours
            else:
                assert round(ours[column], 3) == pytest.approx(value, abs=1e-9), (rater, column)
    assert _row(table, rater="rater_01")["experience"] == "advanced"
    assert (study_tables["dir"] / "ratings_bland_altman.png").stat().st_size > 10000


def test_the_published_limits_of_agreement_are_two_sds(published_data):
    """The authors' ratings limits are bias -/+ 2 SD (Bland & Altman 1986's printed rule), not 1.96."""
    pairs, _ = ratings.rating_pairs(ratings.load_ratings(RATINGS))
    at_196 = paired.bland_altman_agreement(pairs["nondefaced"], pairs["defaced"], n_boot=0)
    assert round(at_196["loa_low"], 3) != -0.913 and round(at_196["loa_low"], 3) == -0.895
    at_2 = paired.bland_altman_agreement(pairs["nondefaced"], pairs["defaced"], sd_multiplier=2.0, n_boot=0)
    assert round(at_2["loa_low"], 3) == -0.913 and round(at_2["loa_high"], 2) == 0.81


def test_every_iqm_has_a_row_of_579_pairs(study_tables, published):
    table = study_tables["iqm_agreement"]
    assert len(table) == 62 and table["iqm"].is_unique
    assert (table["n"] == 579).all()
    spec = published["tables"]["iqm_agreement"]
    assert table["published_bias"].notna().sum() == len(spec["rows"]) == 58
    for iqm, values in spec["rows"].items():
        ours = _row(table, iqm=iqm)
        published_row = dict(zip(spec["columns"], values))
        assert ours["bias"] == pytest.approx(published_row["bias"], rel=1e-9, abs=1e-12), iqm
        # the authors' SD divides by n (numpy's default), ours by n - 1: that is the whole difference
        width, published_width = (
            ours["loa_high"] - ours["loa_low"],
            published_row["loa_high"] - published_row["loa_low"],
        )
        assert published_width == pytest.approx(width * np.sqrt(578 / 579), rel=1e-9), iqm
        assert (published_row["loa_high"] + published_row["loa_low"]) / 2 == pytest.approx(
            ours["bias"], rel=1e-9, abs=1e-12
        )
    constant = _row(table, iqm="qi_1")
    assert constant["bias"] == 0 and "equal" in constant["note"]


def test_multivariate_iqm_test(study_tables):
    table = study_tables["iqm_multivariate"]
    assert list(table["sample"]) == ["site 0", "site 1", "site 2", "pooled"]
    assert table["n"].iloc[:3].sum() == table["n"].iloc[3] == 579
    assert (table["k"] == 10).all() and (table["n_iqms"] == 60).all()  # qi_1 and summary_bg_p05 are constant
    assert ((table["p"] >= 0) & (table["p"] <= 1)).all() and (table["p_signflip"] >= 1 / (N_BOOT + 1)).all()


def test_claims_and_written_files(study_tables):
    claims = study_tables["claims"]
    assert claims["reproduced"].all(), claims[~claims["reproduced"]]
    out = study_tables["dir"]
    for name, columns in {
        "ratings_lmm": ["model", "term", "estimate", "chi2", "df", "p", "n_ratings", "published_estimate"],
        "ratings_agreement": [
            "rater",
            "bias",
            "loa_low",
            "loa_high",
            "ci_low",
            "ci_high",
            "icc",
            "icc_ci_low",
            "icc_ci_high",
            "n",
            "ci_low_bootstrap",
            "ci_high_bootstrap",
            "published_bias",
        ],
        "iqm_agreement": [
            "iqm",
            "n",
            "bias",
            "loa_low",
            "loa_high",
            "ci_low",
            "ci_high",
            "ci_low_bootstrap",
            "ci_high_bootstrap",
            "published_bias",
        ],
        "iqm_multivariate": ["sample", "T2", "F", "p", "p_signflip"],
    }.items():
        written = pd.read_csv(out / f"{name}.tsv", sep="\t")
        assert set(columns) <= set(written.columns), name
        text = (out / f"{name}.md").read_text()
        assert "## Columns" in text and "Provins" in text
    assert "7 of 7 published values reproduced" in (out / "claims.md").read_text()
    assert "(1\\|subject)" in (out / "claims.md").read_text()  # the formula does not break the Markdown table


def test_published_values_file(published):
    ids = [c["id"] for c in published["claims"]]
    assert len(ids) == len(set(ids))
    for claim in published["claims"]:
        assert {"claim", "published", "source", "table", "row", "column"} <= set(claim)
    for name, spec in published["tables"].items():
        assert all(len(v) == len(spec["columns"]) for v in spec["rows"].values()), name


def test_a_claim_contradicting_its_table_is_an_error(published):
    table = pd.DataFrame({"rater": ["pooled"], "bias": [-0.05], "icc": [0.7]})
    wrong = {**published, "claims": [{**published["claims"][4], "published": -0.06}]}
    with pytest.raises(ValueError, match="ba_pooled_bias"):
        provins2025.add_published(table, "ratings_agreement", wrong)


# --------------------------------------------------------------------------- bad input files


GOOD_ROWS = [
    ("rater_01", "001", "0", "3.2"),
    ("rater_01", "001", "1", "3.4"),
    ("rater_02", "001", "0", "2.9"),
    ("rater_02", "001", "1", "3.0"),
]


def _ratings_file(tmp_path, rows, header=("rater_id", "subject", "defaced", "rating")):
    path = tmp_path / "ratings.tsv"
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n")
    return path


def test_good_small_ratings_file(tmp_path):
    table = ratings.load_ratings(_ratings_file(tmp_path, GOOD_ROWS))
    assert list(table["subject"]) == ["001"] * 4 and table["rating"].dtype == float


@pytest.mark.parametrize(
    "rows, header, expected",
    [
        (GOOD_ROWS, ("rater_id", "subject", "defaced"), r"line 1 \(header\): missing column\(s\) 'rating'"),
        (
            GOOD_ROWS[:2] + [("rater_02", "001", "0", "5.2")] + GOOD_ROWS[3:],
            None,
            r"line 4 \(data row 3\), column 'rating': '5.2' is outside the rating scale 1-4",
        ),
        (
            GOOD_ROWS[:1] + [("rater_01", "001", "1", "good")] + GOOD_ROWS[2:],
            None,
            r"line 3 \(data row 2\), column 'rating': 'good' is not a number",
        ),
        (
            GOOD_ROWS[:3] + [("rater_02", "001", "2", "3.0")],
            None,
            r"line 5 \(data row 4\), column 'defaced': '2' is not 0",
        ),
        (
            [("rater_01", "001", "0", "3.2"), ("rater_01", "002", "0", "3.4")] + GOOD_ROWS[2:],
            None,
            r"line 2 \(data row 1\), column 'defaced': rater 'rater_01' rated nondefaced images only",
        ),
        ([("", "001", "0", "3.2")] + GOOD_ROWS[1:], None, r"line 2 \(data row 1\), column 'rater_id'"),
    ],
)
def test_bad_ratings_file_names_file_line_and_column(tmp_path, rows, header, expected):
    path = _ratings_file(tmp_path, rows, header or ("rater_id", "subject", "defaced", "rating"))
    with pytest.raises(ratings.RatingsError, match=expected) as info:
        ratings.load_ratings(path)
    assert str(path) in str(info.value)


def test_bad_iqm_files(tmp_path):
    def write(text):
        path = tmp_path / "iqms.csv"
        path.write_text(text)
        return path

    good = "sub,defaced,site,cjv\n1,0,0,0.5\n1,1,0,0.6\n2,0,1,0.4\n2,1,1,0.4\n"
    nondefaced, defaced, site = published_iqms.load_iqms(write(good))
    assert list(nondefaced.index) == ["1", "2"] and list(site) == ["0", "1"]
    for text, expected in [
        ("sub,defaced,cjv\n1,0,0.5\n", r"missing column\(s\) 'site'"),
        (good.replace("0.6", "high"), r"line 3 \(data row 2\), column 'cjv': 'high' is not a number"),
        (good + "3,0,1,0.5\n", r"line 6 \(data row 5\), column 'sub': subject '3' has 1 nondefaced and 0 defaced"),
        (good.replace("2,1,1", "2,1,2"), r"column 'site': subject '2' has a different site"),
    ]:
        with pytest.raises(published_iqms.IQMTableError, match=expected):
            published_iqms.load_iqms(write(text))


# --------------------------------------------------------------------------- synthetic data, known answers


def _simulated_ratings(effect, n_subjects=60, n_raters=4, seed=0):
    rng = np.random.default_rng(seed)
    subject = rng.normal(0, 0.5, n_subjects)
    rater = rng.normal(0, 0.3, n_raters)
    rows = []
    for r in range(n_raters):
        for s in range(n_subjects):
            for d in (0, 1):
                rows.append(
                    {
                        "rater": f"r{r}",
                        "subject": f"s{s:03d}",
                        "defaced": d,
                        "rating": 3 + subject[s] + rater[r] + effect * d + rng.normal(0, 0.2),
                    }
                )
    table = pd.DataFrame(rows)
    return table.assign(order=np.arange(len(table)))


def test_the_mixed_model_recovers_a_known_effect():
    result = ratings.defacing_lrt(_simulated_ratings(0.3))
    assert abs(result["estimate"] - 0.3) < 3 * result["se"] and result["se"] < 0.02
    assert result["p"] < 1e-10 and result["converged"]
    assert result["var_subject"] == pytest.approx(0.25, rel=0.5) and result["var_residual"] == pytest.approx(
        0.04, rel=0.2
    )
    null = ratings.defacing_lrt(_simulated_ratings(0.0, seed=1))
    assert abs(null["estimate"]) < 3 * null["se"] and null["p"] > 0.01


@pytest.mark.parametrize("reml", [False, True])
def test_dense_fit_equals_statsmodels(reml):
    table = _simulated_ratings(0.1, n_subjects=25, n_raters=3, seed=3)
    X = np.column_stack([np.ones(len(table)), table["defaced"]])
    factors = {"subject": table["subject"].to_numpy(), "rater": table["rater"].to_numpy()}
    ours = lmm.fit_random_intercepts(table["rating"], X, factors, ["Intercept", "defaced"], reml=reml)
    theirs = lmm.fit_statsmodels(table["rating"], X, factors, ["Intercept", "defaced"], reml=reml)
    assert ours.llf >= theirs.llf - 1e-6 and ours.llf == pytest.approx(theirs.llf, abs=1e-4)
    for name in ("Intercept", "defaced"):
        assert ours.params[name] == pytest.approx(theirs.params[name], abs=1e-5)
        assert ours.bse[name] == pytest.approx(theirs.bse[name], rel=1e-3)
    for name in factors:
        assert ours.variances[name] == pytest.approx(theirs.variances[name], rel=1e-2, abs=1e-5)
    assert ours.residual_variance == pytest.approx(theirs.residual_variance, rel=1e-4)


def test_a_variance_of_zero_is_found_on_the_boundary():
    """A grouping whose level means are identical has an ML variance of exactly zero (theta on its bound)."""
    rng = np.random.default_rng(4)
    subject = np.repeat(np.arange(30), 10)
    batch = np.tile(np.arange(5), 60)
    y = 3 + rng.normal(0, 0.5, 30)[subject] + rng.normal(0, 0.2, subject.size)
    y = y - pd.Series(y).groupby(batch).transform("mean").to_numpy() + y.mean()  # batch means all equal
    fit = lmm.fit_random_intercepts(y, np.ones((y.size, 1)), {"subject": subject, "batch": batch}, ["Intercept"])
    assert fit.converged and fit.variances["batch"] < 1e-8 and fit.variances["subject"] > 0.1


def test_first_rating_rule_keeps_the_earliest():
    table = pd.DataFrame(
        {
            "rater": ["a", "a", "a", "a"],
            "subject": ["1", "1", "1", "1"],
            "defaced": [0, 1, 0, 1],
            "rating": [2.0, 3.0, 4.0, 1.0],
            "order": [0, 1, 2, 3],
        }
    )
    first = ratings.first_ratings(table.iloc[::-1])
    assert sorted(first["rating"]) == [2.0, 3.0]
    pairs, unpaired = ratings.rating_pairs(table)
    assert list(pairs["nondefaced"]) == [2.0, 4.0] and list(pairs["defaced"]) == [3.0, 1.0] and unpaired == 0
    pairs, unpaired = ratings.rating_pairs(table.iloc[:3])
    assert len(pairs) == 1 and unpaired == 1


def test_paired_agreement_reuses_the_package_statistics():
    rng = np.random.default_rng(5)
    first = rng.normal(10, 2, 80)
    second = first - 0.5 + rng.normal(0, 0.3, 80)
    row = paired.bland_altman_agreement(first, second, seed=1)
    d = first - second
    assert row["bias"] == pytest.approx(d.mean()) and row["sd"] == pytest.approx(d.std(ddof=1))
    assert row["loa_high"] - row["loa_low"] == pytest.approx(2 * 1.96 * d.std(ddof=1))
    assert row["icc"] == pytest.approx(stats.icc(first, second, engine="closed-form")["icc"])
    assert row["ci_low"] < 0.5 < row["ci_high"] and row["ci_low_bootstrap"] < 0.5 < row["ci_high_bootstrap"]
    # seeded: the same CI again, and the same CI for the column inside a table
    assert paired.bland_altman_agreement(first, second, seed=1)["ci_low_bootstrap"] == row["ci_low_bootstrap"]
    table = paired.agreement_table(
        pd.DataFrame({"x": first, "y": first * 2}), pd.DataFrame({"x": second, "y": second * 2}), seed=1
    )
    assert table.loc[0, "ci_low_bootstrap"] == pytest.approx(row["ci_low_bootstrap"], rel=1e-12)
    assert table.loc[1, "bias"] == pytest.approx(2 * row["bias"])


def test_hotelling_on_one_variable_is_the_paired_t_test():
    rng = np.random.default_rng(6)
    a = rng.normal(0, 1, 40)
    b = a + 0.3 + rng.normal(0, 0.5, 40)
    test = paired.hotelling_paired(a[:, None], b[:, None])
    t = stats.paired_t(a, b)
    assert test["T2"] == pytest.approx(t["t"] ** 2) and test["p"] == pytest.approx(t["pval"])
    assert test["wilks_lambda"] == pytest.approx(1 / (1 + test["T2"] / 39))


def test_multivariate_test_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(7)
    latent = rng.normal(size=(120, 3))
    first = latent @ rng.normal(size=(3, 8)) + rng.normal(0, 0.3, (120, 8))
    noise = first + rng.normal(0, 0.3, (120, 8))
    shifted = noise + 0.3
    groups = np.repeat(["a", "b"], 60)
    null = paired.multivariate_paired_test(first, noise, groups, n_perm=999, seed=1)
    shift = paired.multivariate_paired_test(first, shifted, groups, n_perm=999, seed=1)
    assert list(null["group"]) == ["a", "b", "pooled"]
    assert null.iloc[-1]["p"] > 0.01 and null.iloc[-1]["p_signflip"] > 0.01
    assert shift.iloc[-1]["p"] < 1e-6 and shift.iloc[-1]["p_signflip"] == pytest.approx(1 / 1000)
    assert (shift["k"] == null["k"]).all()


def test_standardised_pca_component_rules():
    rng = np.random.default_rng(8)
    values = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) + rng.normal(0, 0.05, (200, 6))
    values = np.column_stack([values, np.zeros(200)])  # a constant column drops out
    scores, ratio, kept = paired.standardised_pca(values, "kaiser")
    assert scores.shape == (200, 2) and list(kept) == [0, 1, 2, 3, 4, 5] and ratio.sum() > 0.95
    assert paired.standardised_pca(values, 3)[0].shape[1] == 3
    assert paired.standardised_pca(values, 0.5)[0].shape[1] == 1
    with pytest.raises(ValueError, match="n_components"):
        paired.standardised_pca(values, "all")


# --------------------------------------------------------------------------- the workflow


def test_study_config_is_valid_and_empty_cohorts_need_it():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    study = yaml.safe_load((REPO / "config/studies/provins2025.yaml").read_text())
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    jsonschema.validate({**default, **study}, schema)
    jsonschema.validate(default, schema)
    with pytest.raises(jsonschema.ValidationError, match="provins2025"):
        jsonschema.validate({**default, "cohorts": []}, schema)


def test_study_dry_run_plans_the_tables(published_data):
    result = snakemake("-n", "--forceall", "--configfile", "config/studies/provins2025.yaml", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for rule in ("provins2025_ratings_lmm", "provins2025_ratings_agreement", "provins2025_iqms", "provins2025_claims"):
        assert rule in output
    assert "analyse" not in output.split("Job stats")[-1]  # no cohorts, no image analysis
