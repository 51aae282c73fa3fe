"""Send a workflow job's output to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import resource
from pathlib import Path

#: Start of the line :func:`job_log` ends a log with (read by bench/bench_study.py).
RESOURCES_LINE = "defacebench job resources:"


def resources_line() -> str:
    """The process's CPU seconds so far and peak RSS, as :func:`job_log` writes them at a job's end.

    CPU: user + system time of this process (all its threads, imports included,
    from the process's start) and of its children that have finished. Unlike
    the wall time, it is not inflated by other work on a shared machine; unlike
    Snakemake's benchmark ``cpu_time`` (sampled), it misses nothing of a short job.
    """
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return f"{RESOURCES_LINE} cpu_s={cpu:.2f} peak_rss_mb={max(own.ru_maxrss, children.ru_maxrss) / 1024:.0f}"


@contextlib.contextmanager
def job_log(path: str | Path):
    """Redirect stdout, stderr and ``logging`` to ``path`` for the duration of a job.

    A traceback still ends up in the log (and the job still fails) when the
    body raises. The log ends with the job's CPU seconds and peak RSS
    (:func:`resources_line`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield logging.getLogger("defacebench")
        except BaseException:
            import traceback

            traceback.print_exc(file=fh)
            raise
        finally:
            root.removeHandler(handler)
            print(resources_line(), file=fh)
