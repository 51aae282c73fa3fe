# Provins et al. (2025) from its published tables: the ratings' mixed models and agreement, the
# published IQMs' agreement and multivariate test, and the published claims against ours.
# Included only when the config has a provins2025 block (config/studies/provins2025.yaml).


rule provins2025_ratings_lmm:
    input:
        ratings=provins2025_input("ratings"),
    output:
        tsv=f"{PROVINS2025_TABLES}/ratings_lmm.tsv",
        md=f"{PROVINS2025_TABLES}/ratings_lmm.md",
    params:
        engine=PROVINS2025.get("lmm_engine", "dense-ml"),
        poor_below=PROVINS2025.get("poor_below", 2.5),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/provins2025/ratings_lmm.log",
    benchmark:
        f"{RESULTS}/benchmarks/provins2025/ratings_lmm.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/provins2025_ratings_lmm.py"


rule provins2025_ratings_agreement:
    input:
        ratings=provins2025_input("ratings"),
        experience=provins2025_input("rater_experience"),
    output:
        tsv=f"{PROVINS2025_TABLES}/ratings_agreement.tsv",
        md=f"{PROVINS2025_TABLES}/ratings_agreement.md",
        png=f"{PROVINS2025_TABLES}/ratings_bland_altman.png",
    params:
        sd_multiplier=PROVINS2025.get("ratings_loa_sd_multiplier", 1.96),
        n_boot=PROVINS2025.get("bootstrap_resamples", 10000),
        seed=PROVINS2025.get("seed", 0),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/provins2025/ratings_agreement.log",
    benchmark:
        f"{RESULTS}/benchmarks/provins2025/ratings_agreement.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/provins2025_ratings_agreement.py"


rule provins2025_iqms:
    input:
        iqms=provins2025_input("iqms"),
    output:
        agreement=f"{PROVINS2025_TABLES}/iqm_agreement.tsv",
        agreement_md=f"{PROVINS2025_TABLES}/iqm_agreement.md",
        multivariate=f"{PROVINS2025_TABLES}/iqm_multivariate.tsv",
        multivariate_md=f"{PROVINS2025_TABLES}/iqm_multivariate.md",
    params:
        sd_multiplier=PROVINS2025.get("iqm_loa_sd_multiplier", 1.96),
        n_boot=PROVINS2025.get("bootstrap_resamples", 10000),
        n_perm=PROVINS2025.get("permutations", 10000),
        n_components=PROVINS2025.get("pca_components", "kaiser"),
        seed=PROVINS2025.get("seed", 0),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/provins2025/iqms.log",
    benchmark:
        f"{RESULTS}/benchmarks/provins2025/iqms.tsv"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=5,
    script:
        "../scripts/provins2025_iqms.py"


rule provins2025_claims:
    input:
        ratings_lmm=f"{PROVINS2025_TABLES}/ratings_lmm.tsv",
        ratings_agreement=f"{PROVINS2025_TABLES}/ratings_agreement.tsv",
        iqm_agreement=f"{PROVINS2025_TABLES}/iqm_agreement.tsv",
    output:
        tsv=f"{PROVINS2025_TABLES}/claims.tsv",
        md=f"{PROVINS2025_TABLES}/claims.md",
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/provins2025/claims.log",
    benchmark:
        f"{RESULTS}/benchmarks/provins2025/claims.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=2,
    script:
        "../scripts/provins2025_claims.py"
