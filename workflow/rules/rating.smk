# Blinded visual quality rating (Provins et al. 2025): reports of every image variant under random
# identifiers, the key beside them (never inside the served folder), and, once raters have rated,
# the rater-bias analysis. Off unless the configuration's `rating:` block asks for it, so the
# default study's wall time does not grow; the study never waits for ratings.

rule rating_reports:
    input:
        rating_report_inputs,
    output:
        reports=directory(RATING_REPORTS),
        key=RATING_KEY,
    params:
        variants=rating_variants(),
        seed=RATING.get("seed", 0),
        repeats=RATING.get("repeats", 0),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/rating/reports.log",
    benchmark:
        f"{RESULTS}/benchmarks/rating/reports.tsv"
    threads: 1
    resources:
        mem_mb=rule_resources("rating_reports", mem_mb=1500)["mem_mb"],
        runtime=rule_resources("rating_reports", runtime=30)["runtime"],
    script:
        "../scripts/rating_reports.py"


rule rating_analysis:
    input:
        ratings=RATING.get("ratings", "rating.ratings-not-configured"),
        key=RATING_KEY,
    output:
        RATING_ANALYSIS,
    params:
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/rating/analysis.log",
    benchmark:
        f"{RESULTS}/benchmarks/rating/analysis.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/rating_analysis.py"
