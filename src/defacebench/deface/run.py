"""Defacing a subject: shared preparation, one method per call, outputs and integrity record."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import io
from ..brain import extract_brain
from ..integrity import integrity, resample_mask
from ..records import AnalysisFailure, package_versions
from . import external, masking, quickshear, template

METHODS = ("quickshear", "facemasking", "mri_deface", "pydeface")

BACKENDS = {
    "quickshear": "quickshear {version} (Schimke & Hale 2011) with a deepbet brain mask, orientation-safe wrapper",
    "facemasking": "defacebench-facemasking (re-implementation of Milchenko & Marcus 2013)",
    "mri_deface": "defacebench-mri_deface-like (re-implementation of Bischoff-Grethe et al. 2007)",
    "mri_deface-freesurfer": "FreeSurfer mri_deface",
    "pydeface": "defacebench-pydeface-ants (PyDeface template and face mask, antspyx registration)",
    "pydeface-fsl": "pydeface (FSL flirt)",
}

TOOLS = ("quickshear", "pydeface", "antspyx", "deepbet", "torch", "nibabel", "opencv-python-headless")


def prepare_subject(t1w: nib.Nifti1Image, brain_backend: str = "deepbet") -> dict:
    """What every method needs from a subject's full T1w: brain mask and template face region.

    Returns arrays on the T1w grid, or a ``*_failure`` entry (stage, reason) in place of one that failed.
    """
    out: dict = {}
    try:
        out["brain_mask"] = extract_brain(t1w, backend=brain_backend)
    except AnalysisFailure as failure:
        out["brain_mask_failure"] = (failure.stage, failure.reason)
    try:
        out["face_region"], out["face_region_info"] = template.face_region(t1w)
    except AnalysisFailure as failure:
        out["face_region_failure"] = (failure.stage, failure.reason)
    return out


def save_preparation(prep: dict, t1w: nib.Nifti1Image, out_dir: Path) -> None:
    """Write a subject's preparation (masks on the T1w grid, failures as JSON) for every method's job."""
    out_dir = Path(out_dir)
    for key in ("brain_mask", "face_region"):
        if key in prep:
            io.save_image(io.mask_like(prep[key], t1w), out_dir / f"{key}.nii.gz")
    io.write_json({k: v for k, v in prep.items() if k.endswith("_failure") or k.endswith("_info")},
                  out_dir / "preparation.json")


def load_preparation(prep_dir: Path) -> dict:
    """Read what :func:`save_preparation` wrote."""
    prep_dir = Path(prep_dir)
    prep = {k: tuple(v) if k.endswith("_failure") else v for k, v in io.read_json(prep_dir / "preparation.json").items()}
    for key in ("brain_mask", "face_region"):
        path = prep_dir / f"{key}.nii.gz"
        if path.exists():
            prep[key] = np.asarray(nib.load(str(path)).dataobj) > 0
    return prep


def _need(prep: dict, key: str):
    if key not in prep:
        stage, reason = prep.get(f"{key}_failure", ("deface", f"no {key.replace('_', ' ')}"))
        raise AnalysisFailure(stage, reason)
    return prep[key]


def deface_image(method: str, img: nib.Nifti1Image, *, brain_mask: np.ndarray | None = None,
                 face_region: np.ndarray | None = None, options: dict | None = None,
                 name: str = "input.nii.gz") -> tuple[nib.Nifti1Image, dict]:
    """Deface one image; returns the defaced image (input grid, affine, data type) and what ran.

    ``brain_mask`` and ``face_region`` are on ``img``'s grid; a method that
    needs one that is missing raises :class:`AnalysisFailure`.
    """
    options = dict(options or {})
    zooms = img.header.get_zooms()[:3]
    data = np.asanyarray(img.dataobj)
    prep = {k: v for k, v in (("brain_mask", brain_mask), ("face_region", face_region)) if v is not None}
    prep.update(options.pop("_prep_failures", {}))
    info: dict = {"method": method}
    if "command" in options:
        defaced = external.run_command(options["command"], img, name=name)
        info.update(backend=f"command: {options['command']}")
    elif method == "quickshear":
        defaced, params = quickshear.deface(img, _need(prep, "brain_mask"), options.get("buffer_mm", 10.0))
        info.update(backend=BACKENDS["quickshear"].format(version=params["quickshear"]), parameters=params)
    elif method == "pydeface":
        real = external.fsl_pydeface(img)
        if real is not None:
            defaced, info["backend"] = real, BACKENDS["pydeface-fsl"]
        else:
            defaced = masking.remove_face(data, _need(prep, "face_region"))
            info["backend"] = BACKENDS["pydeface"]
    elif method == "mri_deface":
        real = external.freesurfer_mri_deface(img, options)
        if real is not None:
            defaced, info["backend"] = real, BACKENDS["mri_deface-freesurfer"]
        else:
            protect = options.get("protect_mm", 7.0)
            defaced, _ = masking.remove_face_protecting_brain(
                data, _need(prep, "face_region"), _need(prep, "brain_mask"), zooms, protect)
            info.update(backend=BACKENDS["mri_deface"], parameters={"protect_mm": protect})
    elif method == "facemasking":
        params = {k: options[k] for k in ("depth_mm", "blur_mm", "protect_mm", "seed") if k in options}
        defaced, _ = masking.obscure_face_surface(
            data, _need(prep, "face_region"), _need(prep, "brain_mask"), zooms, **params)
        info.update(backend=BACKENDS["facemasking"], parameters=params)
    else:
        raise ValueError(f"unknown defacing method {method!r} and no command template given")
    out = io.scrub_header(io.like(defaced, img))
    return out, info


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name.replace(".nii.gz", "").replace(".nii", "") + ".json")


def deface_subject(method: str, images: dict[str, Path], out_dir: Path, *, options: dict | None = None,
                   render_dir: Path | None = None, prep: dict | None = None) -> dict:
    """Deface every image of a subject with ``method``; write them to ``out_dir`` under their BIDS names.

    The T1w is defaced first; the other images (FLAIR, T2w, ceT1w) are defaced
    the same way using the T1w's brain mask and face region brought to their
    grid, or, with ``options["apply_t1w_mask"]``, get the voxels removed from the
    T1w removed too. Returns the integrity record; study failures are recorded
    in it, never raised.
    """
    from ..privacy import render_and_detect

    options = dict(options or {})
    apply_t1w_mask = bool(options.pop("apply_t1w_mask", False))
    brain_backend = options.pop("brain_extraction", "deepbet")
    render = render_dir is not None and options.pop("render", True)
    options.pop("render", None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"method": method, "status": "ok", "failed_stage": "", "message": "", "images": {},
              "tool_versions": package_versions(*TOOLS), "backend": ""}
    order = sorted(images, key=lambda m: (m != "T1w", m))
    if "T1w" not in images:
        record.update(status="failed", failed_stage="input", message="no T1w image to deface")
        return record
    t1w = io.load_image(images["T1w"])
    start = time.perf_counter()
    if prep is None:
        prep = prepare_subject(t1w, brain_backend)
    record["preparation_s"] = round(time.perf_counter() - start, 2)
    if "face_region_info" in prep:
        record["face_region"] = prep["face_region_info"]
    t1w_removed = None
    for modality in order:
        path = Path(images[modality])
        entry: dict = {"input": path.name, "status": "ok"}
        record["images"][modality] = entry
        start = time.perf_counter()
        try:
            img = t1w if modality == "T1w" else io.load_image(path)
            on_grid = {k: (prep[k] if modality == "T1w" else resample_mask(prep[k], t1w, img))
                       for k in ("brain_mask", "face_region") if k in prep}
            failures = {k: prep[k] for k in ("brain_mask_failure", "face_region_failure") if k in prep}
            if apply_t1w_mask and modality != "T1w":
                if t1w_removed is None:
                    raise AnalysisFailure("deface", "the T1w could not be defaced, so there is no mask to apply")
                removed = resample_mask(t1w_removed, t1w, img)
                defaced = io.scrub_header(io.like(np.where(removed, 0, np.asanyarray(img.dataobj)), img))
                info = {"backend": record["images"]["T1w"].get("backend", "") + " (T1w mask applied)"}
            else:
                defaced, info = deface_image(method, img, options={**options, "_prep_failures": failures},
                                             name=path.name, **on_grid)
            if modality == "T1w":
                from ..integrity import changed

                t1w_removed = changed(np.asanyarray(img.dataobj), np.asanyarray(defaced.dataobj))
            io.save_image(defaced, out_dir / path.name)
            if _sidecar(path).exists():
                io.write_json(io.scrub_sidecar(json.loads(_sidecar(path).read_text())), out_dir / _sidecar(path).name)
            entry.update(info)
            entry["runtime_s"] = round(time.perf_counter() - start, 2)
            brain = on_grid.get("brain_mask")
            if brain is not None:
                entry.update(integrity(np.asanyarray(img.dataobj), np.asanyarray(defaced.dataobj), brain,
                                       on_grid.get("face_region")))
            if render:
                full_png = Path(render_dir) / f"{path.name.split('.')[0]}_desc-full_render.png"
                full = render_and_detect(img, full_png if not full_png.exists() else None)
                mine = render_and_detect(defaced, Path(render_dir) / f"{path.name.split('.')[0]}_desc-{method}_render.png")
                entry.update(face_detected_full=full["face_detected"], face_detected_defaced=mine["face_detected"],
                             render=mine.get("render", ""), face_detector=mine["detector"])
        except AnalysisFailure as failure:
            entry.update(status="failed", failed_stage=failure.stage, message=failure.reason,
                         runtime_s=round(time.perf_counter() - start, 2))
    statuses = [e["status"] for e in record["images"].values()]
    record["backend"] = "; ".join(sorted({e.get("backend", "") for e in record["images"].values() if e.get("backend")}))
    if all(s == "failed" for s in statuses):
        first = record["images"][order[0]]
        record.update(status="failed", failed_stage=first["failed_stage"], message=first["message"])
    elif any(s == "failed" for s in statuses):
        record["status"] = "partial"
    return record
