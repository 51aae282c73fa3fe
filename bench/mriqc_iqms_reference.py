"""MRIQC 24.0.2's own IQM code on arrays written by defacebench: the reference for bench_iqms.py and tests/test_iqms.py.

Runs in a separate environment with mriqc installed (it cannot share
defacebench's: it pins numpy 1.26), e.g.::

    python3 -m venv /work/mriqc-venv
    /work/mriqc-venv/bin/pip install torch==2.13.0 mriqc    # torch pinned or pip pulls a CUDA build
    /work/mriqc-venv/bin/python bench/mriqc_iqms_reference.py <folder>

``<folder>`` holds ``.npy`` arrays on one RAS grid (``image``, ``corrected``,
``brain``, ``head``, ``rotation``, ``hat``, ``artifact``, ``air``,
``labels``, ``inu_field``, ``partial_volumes`` (3, ...), ``template_priors``
(3, ...), ``distance``) and ``meta.json`` (``zooms``, ``fwhm_mm``, ``qi2``:
whether to run the slow QI2). They are written as NIfTI files and given to
MRIQC's interfaces exactly as its anatomical workflow connects them:
``Harmonize`` (corrected image, WM map) -> ``StructuralQC`` (every IQM but
QI2), ``ComputeQI2`` (image, hat mask), plus the mask builders that are pure
functions (``RotationMask``, ``artifact_mask``). Writes ``mriqc.json``
(flat IQM names as in MRIQC's output) into ``<folder>``. Imports nothing from
defacebench.
"""

import json
import os
import sys
import warnings
from pathlib import Path

import nibabel as nb
import numpy as np


def main(folder: Path) -> None:
    import mriqc
    from mriqc import config

    config.loggers.init()  # MRIQC's functions log through loggers its command line sets up
    from mriqc.interfaces.anatomical import (
        ComputeQI2,
        Harmonize,
        RotationMask,
        StructuralQC,
        artifact_mask,
    )

    meta = json.loads((folder / "meta.json").read_text())
    affine = np.diag(list(meta["zooms"]) + [1.0])
    os.chdir(folder)  # MRIQC's interfaces write into the working directory

    def nifti(name, data, dtype):
        path = folder / f"{name}.nii.gz"
        img = nb.Nifti1Image(np.asarray(data, dtype), affine)
        img.header.set_data_dtype(dtype)
        img.to_filename(str(path))
        return str(path)

    arrays = {p.stem: np.load(p) for p in folder.glob("*.npy")}
    image = nifti("image", arrays["image"], np.float32)
    corrected = nifti("corrected", arrays["corrected"], np.float32)
    pvms = [nifti(f"pv_{t}", arrays["partial_volumes"][k], np.float32) for k, t in enumerate(("csf", "gm", "wm"))]
    priors = [nifti(f"prior_{t}", arrays["template_priors"][k], np.float32) for k, t in enumerate(("csf", "gm", "wm"))]
    masks = {name: nifti(name, arrays[name], np.uint8) for name in ("head", "rotation", "hat", "artifact", "air")}

    harmonised = Harmonize(in_file=corrected, wm_mask=pvms[2]).run().outputs.out_file
    qc = (
        StructuralQC(
            in_file=image,
            in_noinu=harmonised,
            in_segm=nifti("labels", arrays["labels"], np.uint8),
            in_bias=nifti("inu_field", arrays["inu_field"], np.float32),
            head_msk=masks["head"],
            air_msk=masks["air"],
            rot_msk=masks["rotation"],
            artifact_msk=masks["artifact"],
            in_pvms=pvms,
            mni_tpms=priors,
            in_fwhm=list(meta["fwhm_mm"]),
        )
        .run()
        .outputs
    )
    out = {k: float(v) for k, v in qc.out_qc.items()}
    if meta.get("qi2", True):
        out["qi_2"] = float(ComputeQI2(in_file=image, air_msk=masks["hat"]).run().outputs.qi2)

    # mask builders that are pure functions of arrays
    rotation = nb.load(RotationMask(in_file=image).run().outputs.out_file).get_fdata() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a zero MAD divides by zero in MRIQC's function
        artefacts = artifact_mask(
            np.asarray(arrays["image"], np.float32), arrays["hat"].astype(bool), arrays["distance"], zscore=10.0
        )
    out["_rotation_mask_differences"] = int(np.count_nonzero(rotation != arrays["rotation"].astype(bool)))
    out["_artifact_mask_differences"] = int(np.count_nonzero(artefacts.astype(bool) != arrays["artifact"].astype(bool)))
    out["_artifact_mask_voxels"] = int(np.count_nonzero(artefacts))
    out["_mriqc_version"] = mriqc.__version__
    (folder / "mriqc.json").write_text(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
