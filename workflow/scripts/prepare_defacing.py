"""Brain mask and template face region of a subject's full T1w, and frontal renders of the full images, shared by every defacing method.

A missing or unusable T1w is recorded in the preparation (stage, reason) for
the defacing jobs to report; the output folder is always written.
"""

from pathlib import Path

from defacebench.deface.run import prepare_from_files, save_preparation
from defacebench.logs import job_log
from defacebench.runner import set_threads
from defacebench.process import keep_freed_memory

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]):
    set_threads(snakemake.threads)
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    prep, t1w = prepare_from_files(
        {m: Path(p) for m, p in snakemake.params.images.items()},
        snakemake.params.brain_extraction,
        render_dir=Path(snakemake.params.render_dir) if snakemake.params.render else None,
        subject_dir=Path(snakemake.params.subject_dir),
    )
    save_preparation(prep, t1w, out)
