"""Brain mask and template face region of a subject's full T1w, and frontal renders of the full images, shared by every defacing method."""
from pathlib import Path

from defacebench.deface import prepare_subject, render_full_images, save_preparation
from defacebench.io import load_image
from defacebench.logs import job_log
from defacebench.runner import set_threads
from defacebench.process import keep_freed_memory

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]):
    set_threads(snakemake.threads)
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    if snakemake.params.t1w is None:
        prep = {"brain_mask_failure": ("input", "no T1w image"), "face_region_failure": ("input", "no T1w image")}
        t1w = None
    else:
        t1w = load_image(snakemake.params.t1w)
        prep = prepare_subject(t1w, snakemake.params.brain_extraction)
    if snakemake.params.render:
        prep["full_renders"] = render_full_images(snakemake.params.images, Path(snakemake.params.render_dir),
                                                  loaded={"T1w": t1w} if t1w is not None else None)
    save_preparation(prep, t1w, out)
