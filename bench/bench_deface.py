"""Defacing speed and integrity at 1 mm on 2 cores: sub-otsu (real, 1 mm) and PyDeface's head template.

Run: DEFACEBENCH_THREADS=2 OMP_NUM_THREADS=2 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=2 python bench/bench_deface.py
Prints per image: brain extraction, template face-region registration, each method's defacing time
(QuickShear given the brain mask; PyDeface and FaceMasking include the registration they need),
integrity fractions, and the process's peak RSS.
"""

import os
import resource
import time
from pathlib import Path

import nibabel as nib

from defacebench import io
from defacebench.brain import extract_brain
from defacebench.deface import deface_image
from defacebench.deface.common import face_weights
from defacebench.integrity import integrity
from defacebench.deface.common import face_region_mask
from defacebench.templates import pydeface_head

REAL = Path(__file__).resolve().parents[2] / "shared/data/real-bids"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main():
    images = {"pydeface-template": nib.load(str(pydeface_head()))}
    if (REAL / "sub-otsu").exists():
        images["sub-otsu"] = io.load_image(REAL / "sub-otsu/anat/sub-otsu_T1w.nii.gz")
    print(f"threads: DEFACEBENCH_THREADS={os.environ.get('DEFACEBENCH_THREADS')} cpus={os.cpu_count()}")
    for name, img in images.items():
        brain, t_brain = timed(extract_brain, img)
        (weights, info), t_reg = timed(face_weights, img)
        print(
            f"{name} {img.shape} zooms={tuple(round(float(z), 2) for z in img.header.get_zooms()[:3])}: "
            f"brain extraction {t_brain:.1f} s, face-region registration {t_reg:.1f} s (scale {info['linear_scale']})"
        )
        for method in ("quickshear", "pydeface", "mri_deface", "facemasking"):
            (out, meta), t = timed(deface_image, method, img, brain_mask=brain, face_region=weights)
            extra = 0.0 if method == "quickshear" else t_reg
            check = integrity(img.dataobj, out.dataobj, brain, face_region_mask(weights))
            print(
                f"  {method:12s} deface {t:5.2f} s, with what it needs beyond the brain mask {t + extra:5.1f} s; "
                f"brain changed {check['brain_voxels_changed_fraction']:.5f}, "
                f"face region changed {check['face_region_changed_fraction']:.3f}  [{meta['backend'][:40]}]"
            )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
