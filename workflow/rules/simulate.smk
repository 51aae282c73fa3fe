# Simulated cohorts with ground truth (the embedded default data).


rule simulate_anatomy:
    output:
        directory(f"{RESULTS}/simulation/anatomy"),
    params:
        # a new version of the head model re-prepares it (Snakemake reruns a job whose params changed)
        model_version=ANATOMY_MODEL_VERSION,
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/simulate_anatomy.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate_anatomy.tsv"
    threads: rule_resources("simulate_anatomy", threads=2)["threads"]
    resources:
        mem_mb=rule_resources("simulate_anatomy", mem_mb=3000)["mem_mb"],
        runtime=rule_resources("simulate_anatomy", runtime=15)["runtime"],
    script:
        "../scripts/simulate_anatomy.py"


rule simulate_subject:
    input:
        anatomy=f"{RESULTS}/simulation/anatomy",
    output:
        subject_dir=directory(f"{RESULTS}/cohorts/{{cohort}}/sub-{{subject}}"),
        truth_dir=directory(f"{RESULTS}/cohorts/{{cohort}}/derivatives/truth/sub-{{subject}}"),
    params:
        kind=lambda wc: COHORTS[wc.cohort].kind,
        seed=lambda wc: COHORTS[wc.cohort].seed,
        bids_root=lambda wc: str(COHORTS[wc.cohort].bids_root),
        settings=SIMULATION,
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/simulate/{{cohort}}/sub-{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate/{{cohort}}/sub-{{subject}}.tsv"
    threads: rule_resources("simulate_subject")["threads"]
    resources:
        mem_mb=rule_resources("simulate_subject", mem_mb=3000)["mem_mb"],
        runtime=rule_resources("simulate_subject", runtime=10)["runtime"],
    script:
        "../scripts/simulate_subject.py"


rule simulate_dataset:
    input:
        unpack(cohort_simulation_inputs),
    output:
        participants=f"{RESULTS}/cohorts/{{cohort}}/participants.tsv",
        description=f"{RESULTS}/cohorts/{{cohort}}/dataset_description.json",
        contact_sheet=f"{RESULTS}/cohorts/{{cohort}}/contact_sheet.png",
    params:
        kind=lambda wc: COHORTS[wc.cohort].kind,
        bids_root=lambda wc: str(COHORTS[wc.cohort].bids_root),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/simulate/{{cohort}}/dataset.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate/{{cohort}}/dataset.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/simulate_dataset.py"
