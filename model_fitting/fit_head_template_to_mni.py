"""Fit the fixed affine from PyDeface's head template to MNI152 2009 that the classic NBV pipeline ships.

    python model_fitting/fit_head_template_to_mni.py [--out src/defacebench/data/head_template_to_mni152.json]

The template is placed in MNI space exactly as the modern NBV arm places a subject: deepbet mask,
N4 inside it, the 12-parameter ANTs affine of the brain to nilearn's MNI152 brain
(defacebench.analysis.registration.affine_to_mni at 1 mm), then the intracranial-outline fit of
the scale (defacebench.analysis.skull.fit_skull_scaling). So the classic pipeline's whole-head
VSCALING and the modern arm's are on the same scale (the brain affine alone put the blurred mean
head's brain 12 % too large: measured on a simulated subject, classic NBV 1408 ml vs true 1252 ml). Seeded, so a rerun on the same library
versions gives the same matrix. The file records the versions and the template's brain volume.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np

from defacebench.analysis import bias, registration, skull
from defacebench.brain import deepbet_mask
from defacebench.records import package_versions
from defacebench.templates import pydeface_head

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/defacebench/data/head_template_to_mni152.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    template = nib.as_closest_canonical(nib.load(str(pydeface_head())))
    mask = deepbet_mask(template)
    head = registration.to_ants(template)
    mask_ants = head.new_image_like(mask.astype(np.float32))
    corrected = bias.n4_correct(head, mask_ants, **bias.N4_SETTINGS)
    brain_to_mni = registration.affine_to_mni(corrected * mask_ants, resolution_mm=1.0)
    points = skull.inner_skull_points(mask, template.affine, skull.SKULL_SETTINGS["surface_step"])
    settings = {k: skull.SKULL_SETTINGS[k] for k in ("vault_z_mm", "loss_scale_mm", "min_points")}
    correction, fit = skull.fit_skull_scaling(registration.apply_affine(brain_to_mni, points), **settings)
    to_mni = correction @ brain_to_mni
    voxel_ml = float(abs(np.linalg.det(template.affine[:3, :3])) / 1000)
    record = {
        "template_to_mni_ras": np.round(to_mni, 6).tolist(),
        "volume_scaling": round(registration.volume_scaling(to_mni), 5),
        "template": "pydeface data/mean_reg2mean.nii.gz",
        "target": "nilearn MNI152 2009 brain (mni_icbm152_t1_tal_nlin_sym_09a_converted)",
        "method": (
            "deepbet mask + N4 of the template, ANTs 12-parameter affine (mattes) to the MNI152 brain at 1 mm, "
            "then the intracranial-outline scale fit (defacebench.analysis.skull.fit_skull_scaling)"
        ),
        "brain_affine_volume_scaling": round(registration.volume_scaling(brain_to_mni), 5),
        "skull_fit": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in fit.items() if k != "skull_scales"},
        "template_brain_ml": round(float(mask.sum()) * voxel_ml, 1),
        "versions": package_versions("pydeface", "nilearn", "deepbet", "antspyx", "torch"),
        "fitted": date.today().isoformat(),
        "script": "model_fitting/fit_head_template_to_mni.py",
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("volume_scaling", "template_brain_ml")}))


if __name__ == "__main__":
    main()
