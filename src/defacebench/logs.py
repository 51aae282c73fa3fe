"""Send a workflow job's output to its Snakemake log file."""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import shutil
import sys
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


#: errno values of a disk (or a quota) with no room left.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full_error(error: BaseException) -> OSError | None:
    """The "no space left" error in ``error``'s chain (itself, its cause or context), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def disk_full_message(error: OSError, folder: str | Path) -> str:
    """What a user needs to hear when a job ran out of disk while writing into ``folder``.

    Finished jobs' outputs are complete (every output is written to a temporary name and renamed,
    :func:`defacebench.io.atomic_path`; Snakemake removes a failed job's outputs), so freeing space
    and running the same command again resumes the study where it stopped.
    """
    folder = Path(folder)
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free there now"
    except OSError:
        free = "free space unknown"
    where = f" while writing {error.filename}" if error.filename else ""
    return (
        f"defacebench: no space left on the disk of {folder}{where} ({error.strerror}; {free}). "
        "Outputs of finished jobs are complete and kept, and this job's partial files were removed: "
        "free space, or set `results:` to a folder on a larger disk, then run the same command again."
    )


@contextlib.contextmanager
def job_log(path: str | Path):
    """Redirect stdout, stderr and ``logging`` to ``path`` for the duration of a job.

    A traceback still ends up in the log (and the job still fails) when the
    body raises. The log ends with the job's CPU seconds and peak RSS
    (:func:`resources_line`). When the disk is full, the body's error is the
    one that propagates (not a failure to write the log about it), and
    :func:`disk_full_message` goes to the job's real stderr, which Snakemake shows
    even when the log could not be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w", buffering=1)
    handler = logging.StreamHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            yield logging.getLogger("defacebench")
    except BaseException as error:
        import traceback

        full = disk_full_error(error)
        if full is not None:
            print(disk_full_message(full, path.parent), file=sys.__stderr__, flush=True)
        with contextlib.suppress(OSError):  # a full disk must not hide the body's error
            traceback.print_exc(file=fh)
            print(resources_line(), file=fh)
        root.removeHandler(handler)
        with contextlib.suppress(OSError):
            fh.close()
        raise
    root.removeHandler(handler)
    try:
        print(resources_line(), file=fh)
        fh.close()
    except OSError as error:
        if disk_full_error(error) is not None:
            print(disk_full_message(error, path.parent), file=sys.__stderr__, flush=True)
        raise
