"""A job's log (defacebench.logs.job_log) ends with its CPU seconds and peak RSS."""

import logging

import pytest

from defacebench.logs import RESOURCES_LINE, job_log


def test_job_log_ends_with_the_jobs_cpu_and_peak_rss(tmp_path):
    log = tmp_path / "logs" / "job.log"
    with job_log(log):
        print("hello")
        logging.getLogger("defacebench").info("working")
    lines = log.read_text().splitlines()
    assert lines[0] == "hello" and "working" in lines[1]
    assert lines[-1].startswith(RESOURCES_LINE) and float(lines[-1].split("cpu_s=")[1].split()[0]) > 0
    assert int(lines[-1].split("peak_rss_mb=")[1]) > 0


def test_a_failing_job_still_logs_its_traceback_and_resources(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(RuntimeError), job_log(log):
        raise RuntimeError("boom")
    text = log.read_text()
    assert "RuntimeError: boom" in text and text.splitlines()[-1].startswith(RESOURCES_LINE)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs, where this process may mount one (root with CAP_SYS_ADMIN); skipped otherwise."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({run.stderr.strip() or run.returncode})")
    yield mount
    import gc

    gc.collect()  # a gzip writer that failed mid-write may still hold its (already unlinked) file
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_fails_the_job_with_a_message_and_no_partial_output(tiny_disk, capfd):
    """Issue 23: a job that fills the results disk fails loudly, says so in one line, and leaves no partial file."""
    import errno

    import nibabel as nib
    import numpy as np

    from defacebench.io import save_image

    noise = np.random.default_rng(0).normal(size=(96, 96, 96)).astype(np.float32)  # 3.4 MB; gzip keeps most of it
    image = tiny_disk / "sub-01" / "sub-01_T1w.nii.gz"
    with pytest.raises(OSError) as raised, job_log(tiny_disk / "logs" / "job.log"):
        print("started")
        save_image(nib.Nifti1Image(noise, np.eye(4)), image)
    assert raised.value.errno == errno.ENOSPC  # the body's own error, not one about writing the log
    message = capfd.readouterr().err
    assert "no space left on the disk of" in message and str(tiny_disk / "logs") in message
    assert "run the same command again" in message
    assert not list(image.parent.iterdir())  # neither the image nor its temporary file
