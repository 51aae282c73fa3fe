"""Running the workflow from tests: Snakemake in a subprocess of this interpreter, and its job counts."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(*args, cwd=REPO, timeout=1500) -> subprocess.CompletedProcess:
    """``python -m snakemake <args>`` in the repository (the Snakefile's folder), output captured."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the "Job stats" table Snakemake prints (a dry run's plan)."""
    return {
        words[0]: int(words[1])
        for words in map(str.split, output.splitlines())
        if len(words) == 2 and words[1].isdigit()
    }
