"""Brain mask and template face region of a subject's full T1w, shared by every defacing method."""
from pathlib import Path

from defacebench.deface import prepare_subject, save_preparation
from defacebench.io import load_image
from defacebench.logs import job_log
from defacebench.runner import set_threads

with job_log(snakemake.log[0]):
    set_threads(snakemake.threads)
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    if snakemake.params.t1w is None:
        save_preparation({"brain_mask_failure": ("input", "no T1w image"), "face_region_failure": ("input", "no T1w image")}, None, out)
    else:
        t1w = load_image(snakemake.params.t1w)
        save_preparation(prepare_subject(t1w, snakemake.params.brain_extraction), t1w, out)
