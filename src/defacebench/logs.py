"""Send a workflow job's output to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path


@contextlib.contextmanager
def job_log(path: str | Path):
    """Redirect stdout, stderr and ``logging`` to ``path`` for the duration of a job.

    A traceback still ends up in the log (and the job still fails) when the
    body raises.
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
