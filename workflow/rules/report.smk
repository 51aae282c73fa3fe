# The study report (issue 22): one self-contained HTML file a person reads, part of the default target.
# Its figures are also written one by one and flagged for `snakemake --report` (captions: workflow/report/).


rule study_report:
    input:
        # a function, so outputs of rule files included after this one count too
        lambda wildcards: report_inputs(),
    output:
        html=report(
            STUDY_REPORT,
            caption="../report/study_report.rst",
            category="Study report",
        ),
        figures=report(
            directory(f"{RESULTS}/report_figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    params:
        # the results folder: the report's parent
        results=lambda wc, output: os.path.dirname(output.html),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/report/study_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/study_report.tsv"
    threads: 1
    resources:
        mem_mb=rule_resources("study_report", mem_mb=2000)["mem_mb"],
        runtime=rule_resources("study_report", runtime=10)["runtime"],
    script:
        "../scripts/study_report.py"
