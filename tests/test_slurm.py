"""The workflow on a real single-node Slurm cluster, submitted through `--workflow-profile profiles/slurm`.

Installs Debian's slurm-wlm and munge, starts munged, slurmctld and slurmd on loopback
(tests/slurm/start_cluster.sh), submits a one-subject simulated study with
snakemake-executor-plugin-slurm and checks its tables, then makes one job fail on purpose and
checks that Snakemake names the failed job and exits non-zero. The daemons are stopped by their
PIDs in a `finally`, whatever happens.

Two environments, as README "Running on a cluster" describes: the Slurm plugin lives in a
submit-only virtual environment (cached in ~/.cache/defacebench/slurm-venv; its numpy pin clashes
with antspyx's), while the jobs run with the analysis environment running this test (profiles/slurm
makes jobs call `python` from PATH, and Slurm exports the submitting environment).

Skipped, with the reason, where a cluster cannot be started (not root, no apt-get, no package
registry, ...). Runtime here: about 5 min, most of it the study's own 7-level DAG.
"""

import importlib.metadata
import importlib.util
import os
import shutil
import socket
import re
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"
SITE_PROFILE = SCRIPTS / "site-profile"
SUBMIT_VENV = Path(os.environ.get("DEFACEBENCH_SLURM_VENV", Path.home() / ".cache/defacebench/slurm-venv"))
PLUGIN = "snakemake-executor-plugin-slurm>=2.8,<3"
SNAKEMAKE_TIMEOUT_S = 600

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _why_no_cluster() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Slurm test cluster needs Linux"
    if os.geteuid() != 0:
        return "starting Slurm daemons and apt-get need root"
    if not (shutil.which("apt-get") or shutil.which("slurmctld")):
        return "no apt-get to install Debian's slurm-wlm (and no slurmctld installed)"
    if not shutil.which("unshare") or not shutil.which("timeout"):
        return "needs unshare(1) and timeout(1) (util-linux, coreutils)"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm_jobstep") is None:
        return (
            "the analysis environment lacks snakemake-executor-plugin-slurm-jobstep, which runs "
            "each job inside Slurm: pip install snakemake-executor-plugin-slurm-jobstep"
        )
    return None


def _submit_snakemake() -> Path:
    """Snakemake + the Slurm executor plugin in their own venv, with the analysis env's Snakemake version."""
    version = importlib.metadata.version("snakemake")
    python, snakemake = SUBMIT_VENV / "bin" / "python", SUBMIT_VENV / "bin" / "snakemake"
    check = (
        f"import importlib.metadata as m, snakemake_executor_plugin_slurm; assert m.version('snakemake') == '{version}'"
    )
    if snakemake.exists() and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0:
        return snakemake
    venv.EnvBuilder(with_pip=True, clear=True).create(SUBMIT_VENV)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"snakemake=={version}", PLUGIN],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode:
        pytest.skip(f"cannot install the Slurm executor plugin into {SUBMIT_VENV}: {pip.stderr[-1500:]}")
    return snakemake


def _free_ports(n: int) -> list[int]:
    """Ports nothing listens on now, so the test cluster does not collide with another Slurm."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _stop_by_pid(pids: dict[int, str]) -> None:
    """Last resort after stop_cluster.sh: SIGKILL any daemon we started that is still alive."""
    for pid, name in pids.items():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                os.kill(pid, 9)
        except (FileNotFoundError, ProcessLookupError):
            pass


@pytest.fixture(scope="module")
def cluster():
    """A running single-node cluster: the environment variables that point clients at it."""
    reason = _why_no_cluster()
    if reason:
        pytest.skip(f"cannot start a Slurm cluster here: {reason}")
    # not under pytest's tmp dir: munged needs every directory above its socket to be world-traversable
    state = Path(tempfile.mkdtemp(prefix="defacebench-slurm-"))
    state.chmod(0o755)
    pids: dict[int, str] = {}
    try:
        start = time.perf_counter()
        ctld_port, slurmd_port = _free_ports(2)
        ports = {"DEFACEBENCH_SLURMCTLD_PORT": str(ctld_port), "DEFACEBENCH_SLURMD_PORT": str(slurmd_port)}
        try:
            started = subprocess.run(
                ["bash", str(SCRIPTS / "start_cluster.sh"), "--install", str(state)],
                env={**_environment(), **ports},
                capture_output=True,
                text=True,
                timeout=660,
            )
        except subprocess.TimeoutExpired as exc:
            started = subprocess.CompletedProcess(exc.cmd, 1, "", f"start_cluster.sh timed out after {exc.timeout} s")
        if (state / "pids").exists():
            for line in (state / "pids").read_text().splitlines():
                name, pid = line.split()
                pids[int(pid)] = name
        if started.returncode != 0:
            pytest.skip(f"cannot start a Slurm cluster here: {(started.stdout + started.stderr)[-1500:]}")
        print(f"cluster up in {time.perf_counter() - start:.0f} s (apt-get included): {started.stdout.strip()}")
        assert set(pids.values()) == {"munged", "slurmctld", "slurmd"}
        yield {"SLURM_CONF": str(state / "etc" / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), str(state)], timeout=120)
        _stop_by_pid(pids)
        shutil.rmtree(state, ignore_errors=True)


def _environment() -> dict[str, str]:
    """This process's environment without the thread limits other tests' analyses may have set.

    They would size the test node (GNU nproc obeys OMP_NUM_THREADS) and every job (Slurm exports
    the submitting environment)."""
    limits = {"OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "DEFACEBENCH_THREADS"}
    return {k: v for k, v in os.environ.items() if k not in limits}


def _snakemake(submit, cluster_env, *args):
    """Submit the workflow to the test cluster (bounded: Snakemake ignores SIGTERM while jobs run)."""
    env = {
        **_environment(),
        **cluster_env,
        # jobs run `python -m snakemake` from PATH: the analysis environment running this test
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # the submit side parses the Snakefile, which imports defacebench (pure Python, no heavy deps)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    cmd = [
        "timeout",
        "-k",
        "30",
        str(SNAKEMAKE_TIMEOUT_S),
        str(submit),
        "--workflow-profile",
        "profiles/slurm",
        "--profile",
        str(SITE_PROFILE),
        *args,
    ]
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT_S + 60)
    return run, run.stdout + run.stderr, time.perf_counter() - start


def _slurm_jobs(cluster_env) -> pd.DataFrame:
    """Every job the controller remembers (MinJobAge=600 s), with its state."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%T"],
        env={**os.environ, **cluster_env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return pd.DataFrame([line.split("|") for line in out.split()], columns=["job", "state"])


def _tiny_study(tmp_path) -> Path:
    """config/test-tiny.yaml cut to one subject: one image per variant, the whole DAG, a few minutes."""
    config = yaml.safe_load((REPO / "config" / "test-tiny.yaml").read_text())
    config["cohorts"] = [dict(c, n_subjects=1) for c in config["cohorts"]][:1]
    config["results"] = str(tmp_path / "results")
    config["report"] = False  # one job fewer to submit; the report has tests of its own
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_study_on_slurm_then_a_failing_job(cluster, tmp_path):
    submit = _submit_snakemake()
    config = _tiny_study(tmp_path)
    tables = tmp_path / "results" / "tables"
    cohort = yaml.safe_load(config.read_text())["cohorts"][0]["name"]

    run, log, seconds = _snakemake(submit, cluster, "--configfile", str(config))
    print(f"study on Slurm: {seconds:.0f} s")
    assert run.returncode == 0, log[-6000:]
    submitted = log.count("has been submitted with SLURM jobid")
    steps = int(re.findall(r"of (\d+) steps", log)[-1])
    # every job of the DAG went through sbatch, none ran locally (the target rule `all` runs nothing)
    assert steps >= 8 and submitted >= steps - 1, log[-6000:]
    jobs = _slurm_jobs(cluster)
    assert (jobs.state == "COMPLETED").sum() >= submitted, jobs

    records = pd.read_csv(tables / f"{cohort}_records.tsv", sep="\t", dtype={"subject": str})
    assert sorted(records.variant) == ["none", "quickshear"]
    assert (records.status == "ok").all(), records.to_string()
    assert records.value.between(800, 2200).all(), records.to_string()
    agreement = pd.read_csv(tables / f"{cohort}_agreement.tsv", sep="\t")
    assert agreement.method.tolist() == ["quickshear"]
    assert "ICC(A,1)" in (tables / "summary.txt").read_text()

    # One job fails on purpose: a cohort table that is not text (invalid UTF-8) makes the study
    # summary job raise. Snakemake must name the failed rule and Slurm job, and exit non-zero (not be
    # killed by the timeout).
    (tables / f"{cohort}_defacing.tsv").write_bytes(b"method\tmodality\n\xff\xfe corrupt on purpose\n")
    run, log, seconds = _snakemake(submit, cluster, "--configfile", str(config))
    print(f"failing job on Slurm: {seconds:.0f} s")
    assert run.returncode not in (0, 124, 137), f"exit {run.returncode}\n{log[-6000:]}"
    assert "Error in rule study_summary" in log, log[-6000:]
    failed = _slurm_jobs(cluster).query("state == 'FAILED'").job.tolist()
    assert len(failed) == 1 and f"SLURM-job '{failed[0]}' failed" in log, log[-6000:]
    assert not (tables / "summary.txt").exists()  # a failed job's output is removed, never left half-written
