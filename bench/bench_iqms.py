"""Speed of the anatomical IQMs (defacebench.quality) and their agreement with MRIQC 24.0.2's own code.

Run::

    python bench/bench_iqms.py [--threads 2] [--mriqc-python /work/mriqc-venv/bin/python] [--work /tmp/iqm-bench]

For a simulated 1 mm head (``defacebench.simulate``, cached in ``--work``) and the
shared real T1w sub-IXI012 (skipped when absent):

1. timing: building the masks (``quality.masks.iqm_inputs``, brain mask given:
   deepbet's, made beforehand) and, separately, computing every IQM from them
   (``quality.iqms.image_quality_metrics``; target <= 10 s on 2 cores);
2. validation (with ``--mriqc-python``, a Python with mriqc 24.0.2 installed,
   or ``DEFACEBENCH_MRIQC_PYTHON``): the same arrays and masks go, as .npy files
   in a temporary folder, to ``bench/mriqc_iqms_reference.py`` run by that
   Python, which feeds them to MRIQC's ``Harmonize``, ``StructuralQC`` and
   ``ComputeQI2``; per IQM: ours, MRIQC's, their relative difference and, where
   they differ by more than 1e-6 relative, the reason.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from defacebench.quality.iqms import IQM_NAMES, IQMInputs, image_quality_metrics

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real-bids"
REFERENCE_SCRIPT = REPO / "bench" / "mriqc_iqms_reference.py"
TOLERANCE = 1e-6

#: IQMs that cannot equal MRIQC's on the same inputs, and why (printed beside any difference).
KNOWN_REASONS = {
    "fwhm": "MRIQC takes FWHM from AFNI 3dFWHMx (not installed); it is given our estimate in mm, "
    "so only the division by the voxel size is compared",
    "qi_2": "MRIQC's chi-squared fit runs scipy's optimiser on 300,000 samples; ours on their distinct "
    "values: the same likelihood summed in another order",
}


def reference_inputs(inputs: IQMInputs, folder: Path, fwhm_mm, *, qi2: bool = True) -> None:
    """Write ``inputs`` as .npy files and meta.json for ``mriqc_iqms_reference.py``."""
    from defacebench.quality.masks import artifact_distance

    arrays = {
        "image": inputs.image,
        "corrected": inputs.corrected,
        "brain": inputs.brain,
        "head": inputs.head,
        "rotation": inputs.rotation,
        "hat": inputs.hat,
        "artifact": inputs.artifact,
        "air": inputs.air,
        "labels": inputs.labels,
        "inu_field": inputs.inu_field,
        "partial_volumes": inputs.partial_volumes,
        "template_priors": inputs.template_priors,
        "distance": artifact_distance(inputs.head, inputs.hat, inputs.provenance.get("artifact_distance", "mortamet")),
    }
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.asarray(array))
    meta = {"zooms": [float(z) for z in inputs.zooms], "fwhm_mm": [float(v) for v in fwhm_mm], "qi2": bool(qi2)}
    (folder / "meta.json").write_text(json.dumps(meta))


def mriqc_reference(inputs: IQMInputs, python: str, fwhm_mm, *, qi2: bool = True, timeout: float = 1800) -> dict:
    """MRIQC 24.0.2's IQMs of ``inputs`` (flat names), computed by ``python`` running the reference script."""
    with tempfile.TemporaryDirectory(prefix="defacebench-mriqc-") as tmp:
        folder = Path(tmp)
        reference_inputs(inputs, folder, fwhm_mm, qi2=qi2)
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
        run = subprocess.run(
            [python, str(REFERENCE_SCRIPT), str(folder)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )  # its stderr goes into our error
        if run.returncode != 0:
            raise RuntimeError(f"the MRIQC reference failed:\n{run.stderr[-3000:]}")
        return json.loads((folder / "mriqc.json").read_text())


def relative_difference(ours: float, theirs: float) -> float:
    if math.isnan(ours) and math.isnan(theirs):
        return 0.0
    if ours == theirs:
        return 0.0
    return abs(ours - theirs) / max(abs(ours), abs(theirs))


def comparison_rows(ours: dict, theirs: dict) -> list[dict]:
    """Per IQM: ours, MRIQC's, relative difference and, above :data:`TOLERANCE`, the known reason."""
    rows = []
    for name in IQM_NAMES:
        mine = ours.get(name, float("nan"))
        reference = theirs.get(name, float("nan"))
        difference = relative_difference(mine, reference)
        reason = ""
        if not difference <= TOLERANCE:
            reason = next((text for key, text in KNOWN_REASONS.items() if name.startswith(key)), "UNEXPLAINED")
        rows.append(
            {"iqm": name, "ours": mine, "mriqc": reference, "relative_difference": difference, "reason": reason}
        )
    return rows


def _simulated_head(work: Path):
    from defacebench.simulate import prepare_anatomy, simulate_subject

    anatomy = work / "anatomy"
    if not (anatomy / "anatomy.json").exists():
        prepare_anatomy(anatomy, threads=1)
    path = work / "bids" / "sub-001" / "anat" / "sub-001_T1w.nii.gz"
    if not path.exists():
        simulate_subject("healthy", "001", 7, anatomy, work / "bids", {"voxel_size": 1.0})
    return path


def _brain_mask(img, work: Path, name: str) -> np.ndarray:
    """deepbet's mask of ``img`` (cached in ``work``): the masks' timing below is with the brain mask given."""
    cached = work / f"{name}_brain.npy"
    if cached.exists():
        return np.load(cached)
    from defacebench.brain import extract_brain

    mask = extract_brain(img)
    np.save(cached, mask)
    return mask


def bench_one(name: str, path: Path, work: Path, threads: int, python: str | None) -> None:
    from defacebench.io import load_image
    from defacebench.quality.iqms import fwhm_classic
    from defacebench.quality.masks import iqm_inputs

    img = load_image(path)
    brain = _brain_mask(img, work, name)
    start, cpu_start = time.perf_counter(), time.process_time()
    inputs = iqm_inputs(img, brain, threads=threads)
    masks_s, masks_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    result = image_quality_metrics(inputs, mriqc_sentinels=True)
    iqms_s, iqms_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"\n== {name}: {path.name}, grid {inputs.image.shape}, voxels {inputs.zooms} mm")
    print(
        f"masks (brain mask given): {masks_s:.1f} s wall, {masks_cpu_s:.1f} s CPU (all threads); "
        f"stages wall {inputs.provenance['stage_times_s']}, CPU {inputs.provenance['stage_cpu_s']}"
    )
    print(
        f"IQMs: {iqms_s:.1f} s wall, {iqms_cpu_s:.1f} s CPU (target <= 10 s on 2 cores); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        "mask voxels: "
        + ", ".join(
            f"{k} {int(np.count_nonzero(getattr(inputs, k)))}"
            for k in ("brain", "head", "rotation", "hat", "artifact", "air")
        )
    )
    if result["undefined"]:
        print("undefined:", json.dumps(result["undefined"]))
    if not python:
        for key, value in result["iqms"].items():
            print(f"{key:22s} {value:.6g}")
        return
    fwhm_mm = fwhm_classic(inputs.image, inputs.brain, inputs.zooms)
    start = time.perf_counter()
    theirs = mriqc_reference(inputs, python, fwhm_mm)
    print(f"MRIQC {theirs['_mriqc_version']} reference: {time.perf_counter() - start:.0f} s")
    rows = comparison_rows(result["iqms"], theirs)
    print(f"{'iqm':22s} {'ours':>14s} {'mriqc':>14s} {'rel.diff':>9s}  reason")
    for row in rows:
        print(
            f"{row['iqm']:22s} {row['ours']:14.6g} {row['mriqc']:14.6g} {row['relative_difference']:9.1e}  {row['reason']}"
        )
    equal = sum(row["relative_difference"] <= TOLERANCE for row in rows)
    print(
        f"{equal}/{len(rows)} IQMs equal to 1e-6 relative; differing: "
        + (", ".join(row["iqm"] for row in rows if row["reason"]) or "none")
    )
    print(
        f"mask builders vs MRIQC's: rotation mask {theirs['_rotation_mask_differences']} voxels differ; "
        f"artefact mask {theirs['_artifact_mask_differences']} voxels differ "
        f"(MRIQC's has {theirs['_artifact_mask_voxels']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mriqc-python", default=os.environ.get("DEFACEBENCH_MRIQC_PYTHON"))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "iqm-bench")
    parser.add_argument("--only", choices=("simulated", "real"), default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cases = []
    if args.only in (None, "simulated"):
        cases.append(("simulated", _simulated_head(args.work)))
    real = REAL / "sub-IXI012" / "anat" / "sub-IXI012_T1w.nii.gz"
    if args.only in (None, "real"):
        if real.exists():
            cases.append(("sub-IXI012", real))
        else:
            print(f"real scan not found at {real}: skipped")
    for name, path in cases:
        bench_one(name, path, args.work, args.threads, args.mriqc_python)


if __name__ == "__main__":
    main()
