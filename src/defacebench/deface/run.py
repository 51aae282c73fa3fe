"""Defacing a subject: shared preparation, one method per call, outputs and the integrity record."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import io
from ..brain import backend_threads, extract_brain
from ..integrity import BRAIN_REMOVED_FRACTION, brain_removed_flag, changed, integrity, resample_mask
from ..records import AnalysisFailure, package_versions
from . import common, facemasking, mri_deface, pydeface, quickshear
from .face import face_presence

#: Methods implemented in the package; any other name needs a ``command`` template in its options.
METHODS = ("quickshear", "facemasking", "mri_deface", "pydeface")

#: Backend names, so that a record always says what ran (re-implementations say so).
BACKENDS = {
    "quickshear": quickshear.BACKEND,
    "facemasking": facemasking.BACKEND,
    "mri_deface": mri_deface.BACKEND_REIMPLEMENTATION,
    "mri_deface-freesurfer": mri_deface.BACKEND_FREESURFER,
    "pydeface": pydeface.BACKEND_ANTS,
    "pydeface-fsl": pydeface.BACKEND_FSL,
}

TOOLS = ("quickshear", "pydeface", "antspyx", "deepbet", "torch", "nibabel", "numpy", "scipy", "opencv-python-headless")

#: Options read by :func:`deface_subject` itself (everything else goes to the method).
SUBJECT_OPTIONS = (
    "apply_t1w_mask",
    "brain_extraction",
    "render",
    "registration_mm",
    "preparation_dir",
    "brain_removed_fraction",
    "brain_removed_is_failure",
    "detect_no_face",
)


# --- preparation: once per subject, shared by every method ----------------------------------------------


def prepare_subject(t1w: nib.Nifti1Image, brain_backend: str = "deepbet", registration_mm: float = 2.0) -> dict:
    """What the methods and the integrity measure need from a subject's full T1w.

    Returns ``brain_mask`` (bool) and ``face_region`` (face weights in [0, 1],
    see :func:`common.face_weights`) on the T1w grid, each replaced by a
    ``*_failure`` entry (stage, reason) when it could not be made,
    ``face_region_info`` (registration details) and, with a brain mask,
    ``face_check`` (:func:`defacebench.deface.face.face_presence`: is there a
    face to remove?).
    """
    out: dict = {}
    start = time.perf_counter()
    try:
        out["brain_mask"] = extract_brain(t1w, backend=brain_backend)
    except AnalysisFailure as failure:
        out["brain_mask_failure"] = (failure.stage, failure.reason)
    if "brain_mask" in out:
        out["face_check"] = face_presence(t1w, out["brain_mask"])
    out["brain_extraction"] = {
        "backend": brain_backend,
        "threads": backend_threads(),
        "runtime_s": round(time.perf_counter() - start, 2),
    }
    start = time.perf_counter()
    try:
        out["face_region"], info = common.face_weights(t1w, registration_mm)
        out["face_region_info"] = {**info, "runtime_s": round(time.perf_counter() - start, 2)}
    except AnalysisFailure as failure:
        out["face_region_failure"] = (failure.stage, failure.reason)
    return out


def missing_image_reason(modality: str, subject_dir: Path | None = None) -> str:
    """Why a subject has no image of ``modality``: 'no T1w image', naming files BIDS did not take as one.

    A scan saved with an extension BIDS does not index (``.nii.zip``, ``.mgz``,
    ``.nii.gz.bak``) is invisible to the plan; naming it tells the user what to rename.
    """
    from ..cohorts import MODALITIES

    reason = f"no {modality} image"
    if subject_dir is None or not Path(subject_dir).is_dir():
        return reason
    suffix = MODALITIES[modality]["suffix"]
    others = sorted(
        p.name for p in Path(subject_dir).rglob(f"*_{suffix}.*") if not p.name.endswith((".nii", ".nii.gz", ".json"))
    )
    if others:
        reason += f" ({', '.join(others)}: not .nii or .nii.gz, so BIDS does not index it as an image)"
    return reason


def prepare_from_files(
    images: dict[str, Path],
    brain_backend: str = "deepbet",
    render_dir: Path | None = None,
    subject_dir: Path | None = None,
) -> tuple[dict, nib.Nifti1Image | None]:
    """A subject's preparation from its full images' files; returns it with the T1w it was made from (or None).

    A T1w that is missing or fails :func:`defacebench.io.validate_input_image`
    gives a preparation holding only the failure (stage, reason), which the
    defacing jobs then record. Non-finite voxels do not stop defacing: brain
    extraction and registration run on a copy with them set to 0 (no signal),
    and the preparation counts them (``input_nonfinite``).
    """
    t1w = None
    if "T1w" not in images:
        failure = ("input", missing_image_reason("T1w", subject_dir))
    else:
        try:
            t1w = io.validate_input_image(images["T1w"], allow_nonfinite=True)
        except io.BadInputImage as bad:
            failure = (bad.stage, bad.reason)
    if t1w is None:
        prep = {"brain_mask_failure": failure, "face_region_failure": failure}
    else:
        counts = io.image_nonfinite_counts(t1w)
        if counts["nonfinite_voxels"]:
            data = np.asanyarray(t1w.dataobj)
            finite = nib.Nifti1Image(np.where(np.isfinite(data), data, 0).astype(np.float32), t1w.affine, t1w.header)
            prep = {**prepare_subject(finite, brain_backend), "input_nonfinite": counts}
        else:
            prep = prepare_subject(t1w, brain_backend)
    if render_dir is not None:
        prep["full_renders"] = render_full_images(
            images, Path(render_dir), loaded={"T1w": t1w} if t1w is not None else None
        )
    return prep, t1w


def render_full_images(
    images: dict[str, Path], render_dir: Path, loaded: dict[str, nib.Nifti1Image] | None = None
) -> dict:
    """A frontal render of each full image with its face-detection result, keyed by modality.

    Done once per subject in the preparation, so that every method's integrity
    record compares against the same full-head render instead of each method's
    job rendering (and writing) it again. ``loaded`` holds images the caller
    has already read (by modality), which are not read again. An image that
    cannot be read gets ``{"failure": (stage, reason)}`` instead of a render.
    """
    from ..privacy import render_and_detect

    loaded = loaded or {}
    renders = {}
    for modality, path in images.items():
        try:
            img = loaded[modality] if modality in loaded else io.validate_input_image(path, allow_nonfinite=True)
        except io.BadInputImage as bad:
            renders[modality] = {"failure": (bad.stage, bad.reason)}
            continue
        renders[modality] = render_and_detect(img, Path(render_dir) / f"{_stem(Path(path))}_desc-full_render.png")
    return renders


def save_preparation(prep: dict, t1w: nib.Nifti1Image | None, out_dir: Path) -> None:
    """Write a subject's preparation (masks on the T1w grid, failures and details as JSON)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "brain_mask" in prep:
        io.save_image(io.mask_like(prep["brain_mask"], t1w), out_dir / "brain_mask.nii.gz")
    if "face_region" in prep:
        weights = np.asarray(prep["face_region"], np.float32)
        io.save_image(nib.Nifti1Image(weights, t1w.affine.copy()), out_dir / "face_weights.nii.gz")
        io.save_image(io.mask_like(common.face_region_mask(prep["face_region"]), t1w), out_dir / "face_region.nii.gz")
    io.write_json(
        {k: v for k, v in prep.items() if k not in ("brain_mask", "face_region")}, out_dir / "preparation.json"
    )


def load_preparation(prep_dir: Path) -> dict:
    """Read what :func:`save_preparation` wrote."""
    prep_dir = Path(prep_dir)
    prep = {
        k: tuple(v) if k.endswith("_failure") else v for k, v in io.read_json(prep_dir / "preparation.json").items()
    }
    if (prep_dir / "brain_mask.nii.gz").exists():
        prep["brain_mask"] = np.asarray(nib.load(str(prep_dir / "brain_mask.nii.gz")).dataobj) > 0
    if (prep_dir / "face_weights.nii.gz").exists():
        prep["face_region"] = np.asarray(nib.load(str(prep_dir / "face_weights.nii.gz")).dataobj, np.float32)
    elif (prep_dir / "face_region.nii.gz").exists():
        prep["face_region"] = np.asarray(nib.load(str(prep_dir / "face_region.nii.gz")).dataobj) > 0
    return prep


def cached_preparation(
    t1w: nib.Nifti1Image, cache_dir: Path | None, brain_backend: str = "deepbet", registration_mm: float = 2.0
) -> dict:
    """:func:`prepare_subject`, read from ``cache_dir`` when it holds one for the same grid, else computed (and saved)."""
    if cache_dir is not None and (Path(cache_dir) / "preparation.json").exists():
        prep = load_preparation(cache_dir)
        if all(np.shape(prep[k]) == t1w.shape[:3] for k in ("brain_mask", "face_region") if k in prep):
            return prep
    prep = prepare_subject(t1w, brain_backend, registration_mm)
    if cache_dir is not None:
        save_preparation(prep, t1w, cache_dir)
    return prep


# --- one image -----------------------------------------------------------------------------------------


def _choice(options: dict, method: str, allowed: tuple[str, ...]) -> str:
    choice = str(options.get("backend", "auto"))
    if choice not in allowed:
        raise ValueError(f"{method}: backend {choice!r} is not one of {allowed}")
    return choice


def deface_image(
    method: str,
    img: nib.Nifti1Image,
    *,
    brain_mask: np.ndarray | None = None,
    face_region: np.ndarray | None = None,
    options: dict | None = None,
    name: str = "input.nii.gz",
    command: str | None = None,
) -> tuple[nib.Nifti1Image, dict]:
    """Deface one image; return the defaced image and what ran.

    The defaced image has the input's grid, affine and data type, and its
    identifying header fields cleared (:func:`defacebench.io.scrub_header`).
    ``brain_mask`` (bool) and ``face_region`` (bool, or face weights in
    [0, 1]) are on ``img``'s grid; a method that needs one that is missing
    raises :class:`AnalysisFailure`. ``command`` (or ``options["command"]``)
    turns any ``method`` name into a command-template method
    (``{input}``/``{output}`` placeholders). Options per method:
    ``buffer_mm`` (quickshear), ``backend`` ("auto", "fsl", "ants" for
    pydeface; "auto", "freesurfer", "reimplementation" for mri_deface),
    ``protect_mm``, ``brain_atlas``, ``face_atlas``, ``mri_deface_command``
    (mri_deface), and the keys of :data:`facemasking.DEFAULTS`.

    ``info`` holds ``backend``, ``parameters`` and the changed-voxel counts.
    """
    options = {k: v for k, v in (options or {}).items() if k not in SUBJECT_OPTIONS}
    failures = options.pop("_prep_failures", {})
    command = command or options.get("command")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    data = np.asanyarray(img.dataobj)
    info: dict = {"method": method}
    if command:
        defaced = common.run_command(command, img, name=name, timeout=float(options.get("timeout_s", 3600)))
        info.update(
            backend=f"command: {command}",
            parameters={"command": command, "executable": common.executable_version(command.split()[0])},
        )
    elif method == "quickshear":
        buffer_mm = float(options.get("buffer_mm", 10.0))
        defaced, params = quickshear.deface(img, common.need(brain_mask, "brain_mask", failures), buffer_mm)
        info.update(backend=quickshear.BACKEND.format(version=params["quickshear"]), parameters=params)
    elif method == "pydeface":
        choice = _choice(options, method, ("auto", "fsl", "ants"))
        if choice == "fsl" or (choice == "auto" and pydeface.fsl_available()):
            if not pydeface.fsl_available():
                raise AnalysisFailure("deface", "pydeface with FSL requested but FSLDIR/pydeface/flirt are missing")
            defaced = pydeface.deface_fsl(img, name)
            info.update(backend=pydeface.BACKEND_FSL, parameters={"cost": "mutualinfo"})
        else:
            defaced = pydeface.deface(data, common.need(face_region, "face_region", failures))
            info.update(backend=pydeface.BACKEND_ANTS, parameters={"registration": common.REGISTRATION})
    elif method == "mri_deface":
        choice = _choice(options, method, ("auto", "freesurfer", "reimplementation"))
        setup = mri_deface.freesurfer_setup(options) if choice != "reimplementation" else None
        if choice == "freesurfer" and setup is None:
            raise AnalysisFailure(
                "deface",
                "FreeSurfer mri_deface requested but the command or its two atlases "
                "(options brain_atlas, face_atlas) are missing",
            )
        if setup is not None:
            defaced = mri_deface.deface_freesurfer(img, setup, name)
            info.update(
                backend=mri_deface.BACKEND_FREESURFER,
                parameters={"command": setup[0], "brain_atlas": setup[1], "face_atlas": setup[2]},
            )
        else:
            protect_mm = float(options.get("protect_mm", 7.0))
            defaced = mri_deface.deface(
                data,
                common.need(face_region, "face_region", failures),
                common.need(brain_mask, "brain_mask", failures),
                zooms,
                protect_mm,
            )
            info.update(
                backend=mri_deface.BACKEND_REIMPLEMENTATION,
                parameters={
                    "protect_mm": protect_mm,
                    "face_atlas": "pydeface facemask (registered)",
                    "brain_atlas": "subject brain mask (dilated)",
                },
            )
    elif method == "facemasking":
        defaced, params = facemasking.obscure(
            img,
            common.need(face_region, "face_region", failures),
            common.need(brain_mask, "brain_mask", failures),
            **options,
        )
        info.update(backend=facemasking.BACKEND, parameters=params)
    else:
        raise ValueError(f"unknown defacing method {method!r} and no command template given")
    out = io.scrub_header(io.like(defaced, img))
    diff = changed(data, np.asanyarray(out.dataobj))
    info.update(
        voxels_changed=int(diff.sum()),
        voxels_changed_fraction=float(diff.mean()),
        voxels_zeroed=int((diff & (np.asanyarray(out.dataobj) == 0)).sum()),
    )
    return out, info


# --- one subject ---------------------------------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".json")


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii")


def deface_subject(
    method: str,
    images: dict[str, Path],
    out_dir: Path,
    *,
    options: dict | None = None,
    render_dir: Path | None = None,
    prep: dict | None = None,
) -> dict:
    """Deface every image of a subject with ``method``; write them to ``out_dir`` under their BIDS names.

    ``images`` maps a modality key (``T1w``, ``ceT1w``, ``T2w``, ``FLAIR``) to
    its input path, which is only read. The T1w is defaced first; the other
    images are defaced the same way with the T1w's brain mask and face region
    brought onto their grid through world coordinates, or, with
    ``options["apply_t1w_mask"]``, lose the voxels the T1w lost (the T1w's
    changed-voxel mask resampled onto their grid). BIDS sidecars are copied
    through :func:`defacebench.io.scrub_sidecar`.

    The preparation (brain mask, face region) comes from ``prep``, from
    ``options["preparation_dir"]`` (a cache: read when present, else written),
    or is computed. With ``render_dir``, a frontal surface render of the full
    and the defaced head is saved there and checked for a face.

    Returns the integrity record; study failures (:class:`AnalysisFailure`)
    are recorded in it, with no image written for a failed modality, never
    raised. ``status`` is ``ok``, ``failed`` (every image failed),
    ``partial``, or ``no_face``: the preparation's ``face_check`` found no face
    (skull-stripped or already defaced; :mod:`.face`), so unless
    ``options["detect_no_face"]`` is False no method runs and every image is
    written unchanged as the variant (:func:`_no_face_record`).

    Each image's entry carries ``brain_removed`` (:func:`defacebench.integrity.brain_removed_flag`:
    more than ``options["brain_removed_fraction"]``, default 0.1 %, of the
    full image's brain voxels changed), and the record ``brain_removed``,
    ``brain_removed_images`` (modality -> percent) and a ``warning`` naming
    them. With ``options["brain_removed_is_failure"]`` a flagged image is a
    defacing failure (stage ``deface``): it is not written, and the analyses
    of it fail with the reason.
    """
    options = dict(options or {})
    apply_t1w_mask = bool(options.get("apply_t1w_mask", False))
    brain_threshold = float(options.get("brain_removed_fraction", BRAIN_REMOVED_FRACTION))
    brain_removed_is_failure = bool(options.get("brain_removed_is_failure", False))
    render = render_dir is not None and bool(options.get("render", True))
    out_dir = Path(out_dir)
    record: dict = {
        "method": method,
        "status": "ok",
        "failed_stage": "",
        "message": "",
        "images": {},
        "tool_versions": package_versions(*TOOLS),
        "backend": "",
        "options": {k: v for k, v in options.items() if not k.startswith("_")},
    }
    out_dir.mkdir(parents=True, exist_ok=True)  # the job's declared output, whatever happens below
    if not images:
        why = (prep or {}).get("brain_mask_failure")
        record.update(
            status="failed",
            failed_stage="input",
            message="no image to deface" + (f" ({why[1]})" if why and why[0] == "input" else ""),
        )
        return record
    order = sorted(images, key=lambda m: (m != "T1w", m))
    reference_key = order[0]  # the T1w when there is one
    try:
        reference = io.validate_input_image(images[reference_key], allow_nonfinite=True)
    except io.BadInputImage as bad:
        # nothing can be defaced without the reference's masks, except by a command template
        record["images"][reference_key] = {
            "input": Path(images[reference_key]).name,
            "status": "failed",
            "failed_stage": bad.stage,
            "message": bad.reason,
        }
        reference = None
        if prep is None:
            prep = {"brain_mask_failure": (bad.stage, bad.reason), "face_region_failure": (bad.stage, bad.reason)}
    start = time.perf_counter()
    if prep is None:
        cache = options.get("preparation_dir")
        prep = cached_preparation(
            reference,
            Path(cache) if cache else None,
            options.get("brain_extraction", "deepbet"),
            float(options.get("registration_mm", 2.0)),
        )
    record["preparation_s"] = round(time.perf_counter() - start, 2)
    record["preparation"] = {
        k: v for k, v in prep.items() if k.endswith("_info") or k.endswith("_failure") or k == "brain_extraction"
    }
    failures = {k: prep[k] for k in ("brain_mask_failure", "face_region_failure") if k in prep}
    face_check = prep.get("face_check") or {}
    if face_check:
        record["face_check"] = face_check
    if reference is not None and face_check.get("has_face") is False and options.get("detect_no_face", True):
        return _no_face_record(record, images, order, out_dir, face_check, prep.get("full_renders") or {})
    reference_removed = None
    for modality in order:
        if modality in record["images"]:  # the reference, already failed
            continue
        path = Path(images[modality])
        entry: dict = {"input": path.name, "status": "ok"}
        record["images"][modality] = entry
        start = time.perf_counter()
        try:
            img = reference if modality == reference_key else io.validate_input_image(path, allow_nonfinite=True)
            full = np.asanyarray(img.dataobj)  # read once for every check below
            if modality != reference_key and reference is not None and "brain_mask" in prep:
                _check_covers(prep["brain_mask"], reference, img, path, reference_key)
            on_grid = {
                k: (prep[k] if modality == reference_key else _resample(prep[k], reference, img))
                for k in ("brain_mask", "face_region")
                if k in prep and reference is not None
            }
            if apply_t1w_mask and modality != reference_key:
                if reference_removed is None:
                    raise AnalysisFailure(
                        "deface", f"the {reference_key} could not be defaced, so there is no mask to apply"
                    )
                removed = resample_mask(reference_removed, reference, img)
                defaced = io.scrub_header(io.like(np.where(removed, 0, full), img))
                info = {
                    "backend": record["images"][reference_key].get("backend", "") + f" ({reference_key} mask applied)",
                    "parameters": {"apply_t1w_mask": True},
                }
            else:
                defaced, info = deface_image(
                    method, img, options={**options, "_prep_failures": failures}, name=path.name, **on_grid
                )
            if modality == reference_key:
                reference_removed = changed(full, np.asanyarray(defaced.dataobj))
            entry.update(info)
            entry["runtime_s"] = round(time.perf_counter() - start, 2)
            entry.update(
                integrity(
                    full,
                    np.asanyarray(defaced.dataobj),
                    on_grid.get("brain_mask"),
                    common.face_region_mask(on_grid["face_region"]) if "face_region" in on_grid else None,
                )
            )
            entry.update(brain_removed_flag(entry, brain_threshold))
            if entry["brain_removed"] and brain_removed_is_failure:
                raise AnalysisFailure("deface", _brain_removed_message(entry) + " (deface.brain_removed_is_failure)")
            io.save_image(defaced, out_dir / path.name)
            if _sidecar(path).exists():
                io.write_json(io.scrub_sidecar(json.loads(_sidecar(path).read_text())), out_dir / _sidecar(path).name)
            entry["output"] = str(out_dir / path.name)
            if render:
                entry.update(
                    _render_pair(
                        img, defaced, path, method, Path(render_dir), prep.get("full_renders", {}).get(modality)
                    )
                )
        except AnalysisFailure as failure:
            entry.update(
                status="failed",
                failed_stage=failure.stage,
                message=failure.reason,
                runtime_s=round(time.perf_counter() - start, 2),
            )
    _flag_brain_removed(record)
    statuses = [e["status"] for e in record["images"].values()]
    record["backend"] = "; ".join(sorted({e["backend"] for e in record["images"].values() if e.get("backend")}))
    if all(s == "failed" for s in statuses):
        first = record["images"][order[0]]
        record.update(status="failed", failed_stage=first["failed_stage"], message=first["message"])
    elif any(s == "failed" for s in statuses):
        failed = [m for m in order if record["images"][m]["status"] == "failed"]
        record.update(
            status="partial",
            failed_stage=record["images"][failed[0]]["failed_stage"],
            message="; ".join(f"{m}: {record['images'][m]['message']}" for m in failed),
        )
    return record


#: Backend of a variant left undefaced because the scan has no face.
NO_FACE_BACKEND = "none (no face to remove: the variant is the full image)"


def _no_face_record(
    record: dict, images: dict[str, Path], order: list[str], out_dir: Path, face_check: dict, renders: dict
) -> dict:
    """The record of a subject with no face (:mod:`.face`): every image is written unchanged as the variant.

    Status ``no_face`` (record and images), with the check's reason as the
    message: no method ran, so nothing failed and no brain was removed; the
    analyses of the variant see the full image's voxels (headers and sidecars
    scrubbed as for any variant). An image that cannot be read is a failure as usual.
    """
    reason = face_check.get("reason", "no face to remove")
    for modality in order:
        path = Path(images[modality])
        entry: dict = {"input": path.name}
        record["images"][modality] = entry
        try:
            img = io.validate_input_image(path, allow_nonfinite=True)
        except io.BadInputImage as bad:
            entry.update(status="failed", failed_stage=bad.stage, message=bad.reason)
            continue
        io.save_image(io.scrub_header(img), out_dir / path.name)
        if _sidecar(path).exists():
            io.write_json(io.scrub_sidecar(json.loads(_sidecar(path).read_text())), out_dir / _sidecar(path).name)
        entry.update(
            status="no_face",
            message=reason,
            backend=NO_FACE_BACKEND,
            output=str(out_dir / path.name),
            voxels_changed=0,
            voxels_changed_fraction=0.0,
            brain_removed=False,
            brain_removed_pct=0.0,
        )
        full_render = renders.get(modality) or {}
        if "render" in full_render:  # the variant's render is the full image's
            entry.update(
                face_detected_full=full_render["face_detected"],
                face_detected_defaced=full_render["face_detected"],
                faces_detected_full=full_render["faces_detected"],
                faces_detected_defaced=full_render["faces_detected"],
                render_full=full_render["render"],
                render_defaced=full_render["render"],
                face_detector=full_render["detector"],
            )
    _flag_brain_removed(record)
    record["backend"] = NO_FACE_BACKEND
    failed = [m for m in order if record["images"][m]["status"] == "failed"]
    if len(failed) == len(order):
        first = record["images"][order[0]]
        record.update(status="failed", failed_stage=first["failed_stage"], message=first["message"])
    else:
        record.update(status="no_face", message=reason)
        if failed:
            record["message"] += "; " + "; ".join(f"{m}: {record['images'][m]['message']}" for m in failed)
    return record


def _brain_removed_message(entry: dict) -> str:
    return (
        f"defacing removed brain: {entry['brain_removed_pct']:.2f} % of the full image's brain voxels changed "
        f"(threshold {entry['brain_removed_threshold_pct']:g} %)"
    )


def _flag_brain_removed(record: dict) -> None:
    """Carry the images' ``brain_removed`` flags up to the record: ``brain_removed`` and a ``warning`` naming them.

    ``brain_removed`` is True when any image was flagged, False when every
    image's brain change was measured and none was, None when none was measured.
    """
    flags = {m: e.get("brain_removed") for m, e in record["images"].items()}
    flagged = [m for m, flag in flags.items() if flag]
    record["brain_removed"] = True if flagged else (False if any(f is False for f in flags.values()) else None)
    record["brain_removed_images"] = {m: record["images"][m]["brain_removed_pct"] for m in flagged}
    if flagged:
        record["warning"] = "; ".join(f"{m}: {_brain_removed_message(record['images'][m])}" for m in flagged)


#: Share of the reference's brain that another modality's field of view must hold to be defaced with its masks.
MIN_BRAIN_COVERED = 0.5


def _check_covers(
    brain_mask: np.ndarray, reference: nib.Nifti1Image, img: nib.Nifti1Image, path: Path, reference_key: str
) -> None:
    """Raise :class:`io.BadInputImage` when ``img``'s field of view misses most of the reference's brain.

    The reference's masks reach another modality through world coordinates,
    which presumes one scanner space; an image elsewhere (a wrong or missing
    registration, another session's header) would be "defaced" with an empty
    mask, its face kept.
    """
    voxels = np.argwhere(np.asarray(brain_mask, bool))
    if voxels.size == 0:
        return
    to_img = np.linalg.inv(img.affine) @ reference.affine
    mapped = voxels @ to_img[:3, :3].T + to_img[:3, 3]
    inside = np.all((mapped > -0.5) & (mapped < np.array(img.shape[:3]) - 0.5), axis=1).mean()
    if inside < MIN_BRAIN_COVERED:
        raise io.BadInputImage(
            path,
            f"its field of view holds {100 * inside:.0f} % of the {reference_key}'s brain "
            f"(at least {100 * MIN_BRAIN_COVERED:.0f} % needed): the two grids are not "
            "in one scanner space, so the face cannot be located on it",
        )


def _resample(array: np.ndarray, source: nib.Nifti1Image, target: nib.Nifti1Image) -> np.ndarray:
    """A mask (bool) or face weights (float) from ``source``'s grid onto ``target``'s, through world coordinates."""
    array = np.asarray(array)
    if array.dtype == bool:
        return resample_mask(array, source, target)
    # face weights: resample the binary region and keep weights binary on the new grid
    return resample_mask(array > 0.5, source, target).astype(np.float32)


def _render_pair(
    full: nib.Nifti1Image,
    defaced: nib.Nifti1Image,
    path: Path,
    method: str,
    render_dir: Path,
    full_result: dict | None = None,
) -> dict:
    """Frontal renders of the full and the defaced head, with face detection on each.

    ``full_result`` is the full head's render from the preparation
    (:func:`render_full_images`); without one, the full head is rendered here.
    """
    from ..privacy import render_and_detect

    stem = _stem(path)
    if full_result is None or "render" not in full_result:
        full_result = render_and_detect(full, render_dir / f"{stem}_desc-full_render.png")
    mine = render_and_detect(defaced, render_dir / f"{stem}_desc-{method}_render.png")
    return {
        "face_detected_full": full_result["face_detected"],
        "face_detected_defaced": mine["face_detected"],
        "faces_detected_full": full_result["faces_detected"],
        "faces_detected_defaced": mine["faces_detected"],
        "render_full": full_result["render"],
        "render_defaced": mine["render"],
        "face_detector": mine["detector"],
    }
