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
