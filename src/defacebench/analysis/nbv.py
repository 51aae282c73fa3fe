"""Normalised brain volume (NBV), the SIENAX-like arm.

SIENAX (Smith et al. 2002, "Accurate, robust, and automated longitudinal and
cross-sectional brain change analysis", NeuroImage 17:479-489) measures brain
tissue volume in native space and normalises it for head size with the volume
scaling of a skull-constrained affine registration to MNI152:
``NBV = (GM + WM) x VSCALING``.

Backends
--------
``"sienax-like"`` (default; reported as
"defacebench-sienax-like (re-implementation after Smith et al. 2002)"), all in
Python, not FSL:

1. brain extraction with deepbet (:func:`defacebench.brain.extract_brain`;
   SIENAX uses BET);
2. N4 bias correction inside the brain mask (:mod:`.bias`; SIENAX relies on
   FAST's own bias correction);
3. 12-parameter affine of the skull-stripped, corrected brain to nilearn's
   MNI152 2009 brain (:mod:`.registration`, ANTs);
4. a re-fit of the three scale factors so that the subject's skull-bounded
   intracranial surface matches the template's
   (:mod:`.skull`; SIENAX uses BET's outer-skull image and ``pairreg``; here
   the inner skull surface, i.e. the intracranial-mask outline, is fitted to
   the MNI152 brain outline, because no MNI skull image is available offline);
5. VSCALING = det of the linear part of the final subject -> MNI affine;
6. three-class partial-volume segmentation of the brain in native space
   (:mod:`.segmentation`, after FAST; SIENAX runs FAST);
7. GREY, WHITE, BRAIN = GREY + WHITE (unnormalised, ml) and their products
   with VSCALING (normalised). SIENAX's pgrey and vcsf need its MNI-space
   periphery and ventricle masks, which are not available offline: not reported.

Pipelines (setting ``pipeline``; explicit settings override the preset):

* ``"modern"`` (default): deepbet, then the intracranial-outline fit of step 4. Neither looks at
  the face, so defacing barely moves it.
* ``"classic"``: the parts of SIENAX that see the whole head, as open re-implementations
  (:mod:`.head_registration`, :mod:`.bet_like`): a whole-head 12-parameter affine to a head
  template (after FLIRT), the dilated MNI152 brain region carried back to mask the neck (after
  ``bet -B``'s ``standard_space_roi``), the BET-like surface (Smith 2002) inside it
  (``brain_backend="bet-like"``), and VSCALING from the whole-head affine
  (``scaling="whole-head"``) where SIENAX lets the skull found by BET constrain ``pairreg``: there
  is no MNI152 skull image offline to fit a skull surface to, and the whole-head affine is the
  step of the classic chain in which the head's outline (face included) sets the scale.
  The four combinations of ``brain_backend`` x ``scaling`` are the ablation of
  ``bench/bench_ablation.py``.

``"fsl-sienax"``: FSL's own ``sienax`` through fslpy's wrapper machinery
(needs FSLDIR); its ``report.sienax`` is parsed.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from ..arrays import bounding_box
from ..io import from_canonical, mask_like, to_canonical, voxel_volume_ml
from ..records import AnalysisFailure, check_plausible, failure_from_exception

#: Short backend keys (configuration) -> the name every result carries.
BACKENDS = {
    "sienax-like": "defacebench-sienax-like (re-implementation after Smith et al. 2002)",
    "fsl-sienax": "FSL sienax (Smith et al. 2002) via fslpy",
}

#: Settings each pipeline stands for (``pipeline`` setting).
PIPELINES = {
    "modern": {"brain_backend": "deepbet", "scaling": "intracranial-outline"},
    "classic": {"brain_backend": "bet-like", "scaling": "whole-head"},
}

#: Scaling sources of the sienax-like backend.
SCALINGS = ("intracranial-outline", "whole-head")

#: Default VSCALING range outside which the registration is taken to have failed.
VSCALING_RANGE = (0.7, 2.2)  # subject -> nilearn MNI152 2009 (larger than FSL MNI152: adult heads give 1.1-1.8)

#: Registration settings of the default backend: registration.AFFINE_SETTINGS (both images at 2 mm).
#: Measured on 6 simulated subjects (2026-11-23): VSCALING error against truth 2.4 % at 2 mm and
#: 2.3 % at 1 mm (within the run-to-run spread of ~1 %), 1.7 s instead of 7.6 s per registration.
DEFAULT_REGISTRATION = {"resolution_mm": 2.0}


#: Where :func:`keep_intermediates` collects the sienax-like backend's intermediate results (None: nowhere).
_KEPT: dict | None = None


@contextmanager
def keep_intermediates():
    """Within the block, the sienax-like backend also keeps what it computed on the way; yields that dict.

    For an arm that needs the same steps on the same image (the image-quality metrics,
    :mod:`defacebench.quality.masks`): ``canonical`` (the RAS-canonical input), ``brain_mask``
    and ``brain_backend``, ``inu_field`` (N4's multiplicative field on the whole canonical grid;
    NBV divides it out inside the brain only), ``brain_to_mni`` (the brain affine before the skull
    fit; intracranial-outline scaling only), ``partial_volumes`` and ``segmentation_parameters``,
    and the settings each step ran with (``n4``, ``registration``, ``segmentation``). Each is
    kept as soon as its step succeeds, so a run that fails later still leaves the earlier ones.
    Keeping them changes nothing the backend computes or returns. One run per block: a second
    run replaces what the first kept.
    """
    global _KEPT
    previous, _KEPT = _KEPT, {}
    try:
        yield _KEPT
    finally:
        _KEPT = previous


def _keep(**values) -> None:
    if _KEPT is not None:
        _KEPT.update(values)


def set_threads(threads: int) -> None:
    """Give ITK (ANTs) and torch (deepbet) ``threads`` threads."""
    threads = max(int(threads), 1)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    os.environ["DEFACEBENCH_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # torch is a dependency; guard only for minimal installs
        pass


@contextmanager
def _stage(name: str, times: dict, wrap=(RuntimeError, ValueError, AssertionError, MemoryError)):
    """Time a stage; turn a tool's error in it into an AnalysisFailure naming the stage."""
    start = time.perf_counter()
    try:
        yield
    except AnalysisFailure:
        raise
    except wrap as exc:
        raise failure_from_exception(name, exc) from exc
    finally:
        times[name] = round(time.perf_counter() - start, 2)


def _check_input(images: dict) -> nib.Nifti1Image:
    if "T1w" not in images or images["T1w"] is None:
        raise AnalysisFailure("input", "no T1w image")
    img = images["T1w"]
    if img.ndim == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if img.ndim != 3:
        raise AnalysisFailure("input", f"T1w is not a 3D volume (shape {img.shape})")
    data = np.asanyarray(img.dataobj)
    finite = np.isfinite(data)
    if not finite.any() or np.ptp(data[finite]) == 0:
        raise AnalysisFailure("input", "T1w image is empty or constant")
    return img


def normalised_brain_volume(
    images: dict[str, nib.Nifti1Image],
    *,
    backend: str = "sienax-like",
    threads: int = 1,
    plausible_range_ml=(800, 2200),
    **settings,
) -> dict:
    """NBV (ml) of ``images["T1w"]`` with SIENAX's report quantities.

    Returns ``{"value": NBV, "backend", "gm_ml", "wm_ml", "csf_ml", "brain_ml"
    (unnormalised GM + WM), "gm_norm_ml", "wm_norm_ml", "vscaling",
    "parameters": {...}, "stage_times_s": {...}}``; the default backend also
    ``"segmentation"``, the hard tissue labels on the input's grid (:func:`tissue_labels`).

    Settings of the default backend (all optional): ``brain_backend`` ("deepbet"),
    ``skull_constraint`` ("auto": fit the inner-skull surface, also on
    skull-stripped images whose mask outline still is the intracranial boundary;
    "required": fail when the image shows no tissue outside the brain;
    "off": brain-intensity affine only),
    ``vscaling_range`` ((0.6, 1.6)), ``wm_fraction_range`` ((0.25, 0.65), WM share
    of GM + WM outside which the segmentation is taken to have failed), ``n4``, ``registration``, ``skull``,
    ``segmentation`` (dicts overriding the module defaults).

    Raises :class:`AnalysisFailure` with stage ``input``, ``brain_extraction``,
    ``bias_correction``, ``skull_estimation``, ``registration``,
    ``segmentation`` or ``plausibility``.
    """
    set_threads(threads)
    img = _check_input(images)
    if backend in ("sienax-like", BACKENDS["sienax-like"]):
        pipeline = settings.pop("pipeline", None)
        if pipeline is not None:
            if pipeline not in PIPELINES:
                raise ValueError(f"unknown NBV pipeline {pipeline!r}; choose from {sorted(PIPELINES)}")
            settings = {**PIPELINES[pipeline], **settings}
        result = _sienax_like(img, threads=threads, **settings)
        result["parameters"]["pipeline"] = pipeline or _pipeline_name(result["parameters"])
    elif backend in ("fsl-sienax", BACKENDS["fsl-sienax"]):
        result = _fsl_sienax(img, threads=threads, **settings)
    else:
        raise ValueError(f"unknown NBV backend {backend!r}; choose from {sorted(BACKENDS)}")
    low, high = (list(plausible_range_ml) + [None, None])[:2] if plausible_range_ml else (None, None)
    result["parameters"]["plausible_range_ml"] = [low, high]
    check_plausible(result["value"], low, high, "plausibility", "normalised brain volume", "ml")
    return result


def _pipeline_name(parameters: dict) -> str:
    """The preset a run's settings match (``modern``, ``classic``), or ``custom``."""
    chosen = {"brain_backend": parameters["brain_extraction"], "scaling": parameters["scaling"]}
    return next((name for name, preset in PIPELINES.items() if preset == chosen), "custom")


def tissue_labels(pve: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Hard tissue labels as FSL FAST's ``_seg`` writes them: 1 CSF, 2 GM, 3 WM (the largest fraction), 0 outside.

    ``pve`` holds the partial-volume fractions (3, ...) of CSF, GM, WM
    (:func:`.segmentation.segment_tissues`); Zhang, Brady & Smith 2001, IEEE TMI 20:45.
    """
    mask = np.asarray(mask, bool)
    labels = np.zeros(mask.shape, np.uint8)
    if mask.any():
        box = bounding_box(mask)  # the brain's box: a third of a head's grid
        labels[box] = np.where(mask[box], np.argmax(pve[(slice(None),) + box], axis=0) + 1, 0)
    return labels


def _sienax_like(
    img: nib.Nifti1Image,
    *,
    threads: int,
    brain_backend: str = "deepbet",
    scaling: str = "intracranial-outline",
    skull_constraint: str = "auto",
    vscaling_range=VSCALING_RANGE,
    wm_fraction_range=(0.25, 0.65),
    n4: dict | None = None,
    registration: dict | None = None,
    head_registration: dict | None = None,
    skull: dict | None = None,
    segmentation: dict | None = None,
) -> dict:
    from ..brain import extract_brain
    from . import bias, head_registration as head_reg, skull as skull_mod
    from . import registration as reg
    from .segmentation import SEGMENTATION_SETTINGS, segment_tissues

    if skull_constraint not in ("auto", "required", "off"):
        raise ValueError(f"skull_constraint must be auto, required or off, not {skull_constraint!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, not {scaling!r}")
    head_settings = {**head_reg.HEAD_AFFINE_SETTINGS, **(head_registration or {})}
    n4_settings = {**bias.N4_SETTINGS, **(n4 or {})}
    reg_settings = {**reg.AFFINE_SETTINGS, **DEFAULT_REGISTRATION, **(registration or {})}
    skull_settings = {**skull_mod.SKULL_SETTINGS, **(skull or {})}
    seg_settings = {**SEGMENTATION_SETTINGS, **(segmentation or {})}
    times: dict[str, float] = {}

    canonical = to_canonical(img)
    if _KEPT is not None:
        _KEPT.clear()  # a new run: nothing of a previous image's
    zooms = canonical.header.get_zooms()[:3]
    voxel_ml = voxel_volume_ml(canonical)

    head_to_mni = None
    brain_info: dict = {}
    if brain_backend == "bet-like" or scaling == "whole-head":
        with _stage("head_registration", times):
            head_to_mni = head_reg.head_to_mni(canonical, **head_settings)

    with _stage("brain_extraction", times):
        if brain_backend == "bet-like":
            mask, brain_info = head_reg.bet_like_in_standard_space_roi(canonical, head_to_mni)
        else:
            mask = extract_brain(canonical, backend=brain_backend)

    with _stage("bias_correction", times):
        head = reg.to_ants(canonical)
        mask_ants = head.new_image_like(mask.astype(np.float32))
        corrected, field = bias.n4_correct_with_field(
            head,
            mask_ants,
            shrink_factor=n4_settings["shrink_factor"],
            iterations=n4_settings["iterations"],
            tolerance=n4_settings["tolerance"],
        )
        _keep(canonical=canonical, brain_mask=mask, brain_backend=brain_backend, inu_field=field, n4=n4_settings)
        intensity = corrected.numpy().astype(np.float32)
        if not np.isfinite(intensity[mask]).all():
            raise AnalysisFailure("bias_correction", "N4 produced non-finite intensities")

    skull_info: dict = {}
    brain_vscaling = None
    with _stage("skull_estimation", times):
        has_head = skull_mod.has_extracranial_tissue(intensity, mask, zooms)
        if skull_constraint == "required" and not has_head:
            raise AnalysisFailure(
                "skull_estimation", "no skull in the image (skull-stripped?) and skull_constraint='required'"
            )
    if scaling == "intracranial-outline":
        with _stage("registration", times):
            brain_to_mni = reg.affine_to_mni(corrected * mask_ants, **reg_settings)
            brain_vscaling = reg.volume_scaling(brain_to_mni)
            if not np.isfinite(brain_to_mni).all():
                raise AnalysisFailure("registration", "brain-to-MNI affine is not finite")
            _keep(brain_to_mni=brain_to_mni, registration=reg_settings)
    with _stage("skull_estimation", times):
        if scaling == "whole-head":
            to_mni = head_to_mni
            scaling_source = (
                "whole-head affine to the head template (after FLIRT of the whole head), then template -> MNI152"
            )
        elif skull_constraint != "off":
            points = skull_mod.inner_skull_points(mask, canonical.affine, skull_settings["surface_step"])
            try:
                correction, skull_info = skull_mod.fit_skull_scaling(
                    reg.apply_affine(brain_to_mni, points),
                    vault_z_mm=skull_settings["vault_z_mm"],
                    loss_scale_mm=skull_settings["loss_scale_mm"],
                    min_points=skull_settings["min_points"],
                )
            except ValueError as exc:
                raise AnalysisFailure("skull_estimation", str(exc)) from exc
            to_mni = correction @ brain_to_mni
            scaling_source = "inner skull surface (intracranial-mask outline) fitted to the MNI152 brain outline"
        else:
            to_mni = brain_to_mni
            scaling_source = "brain-intensity affine only (skull_constraint='off')"

    vscaling = reg.volume_scaling(to_mni)
    low, high = vscaling_range
    if not np.isfinite(vscaling) or not (low <= vscaling <= high):
        raise AnalysisFailure("registration", f"implausible VSCALING {vscaling:.3f} (outside {low}-{high})")

    with _stage("segmentation", times):
        pve, seg_params = segment_tissues(intensity, mask, **seg_settings)
        _keep(partial_volumes=pve, segmentation_parameters=seg_params, segmentation=seg_settings)
        csf_ml, gm_ml, wm_ml = (float(pve[k].sum(dtype=np.float64) * voxel_ml) for k in range(3))
        if gm_ml <= 0 or wm_ml <= 0:
            raise AnalysisFailure("segmentation", f"empty tissue class (GM {gm_ml:.0f} ml, WM {wm_ml:.0f} ml)")
        wm_share = wm_ml / (gm_ml + wm_ml)
        if not (wm_fraction_range[0] <= wm_share <= wm_fraction_range[1]):
            # adult WM/(GM+WM) is ~0.35-0.5; far outside means the classes landed on the wrong peaks
            raise AnalysisFailure(
                "segmentation",
                f"implausible tissue split: WM is {wm_share:.0%} of GM+WM "
                f"(allowed {wm_fraction_range[0]:.0%}-{wm_fraction_range[1]:.0%})",
            )

    brain_ml = gm_ml + wm_ml
    nbv = brain_ml * vscaling
    times["total"] = round(sum(times.values()), 2)
    return {
        "value": nbv,
        "backend": BACKENDS["sienax-like"],
        "segmentation": mask_like(from_canonical(tissue_labels(pve, mask), img), img),
        "gm_ml": gm_ml,
        "wm_ml": wm_ml,
        "csf_ml": csf_ml,
        "brain_ml": brain_ml,
        "gm_norm_ml": gm_ml * vscaling,
        "wm_norm_ml": wm_ml * vscaling,
        "brain_norm_ml": nbv,
        "vscaling": vscaling,
        "brain_only_vscaling": brain_vscaling,
        "brain_mask_ml": float(mask.sum() * voxel_ml),
        "extracranial_tissue": bool(has_head),
        "parameters": {
            "brain_extraction": brain_backend,
            **({"brain_extraction_details": brain_info} if brain_info else {}),
            "scaling": scaling,
            **(
                {"head_registration": {"method": head_reg.METHOD, **_plain(head_settings)}}
                if head_to_mni is not None
                else {}
            ),
            "bias_correction": {"method": "N4 (antspyx)", **_plain(n4_settings)},
            **(
                {
                    "registration": {
                        "method": "ANTs affine, N4 brain -> nilearn MNI152 2009 brain",
                        **_plain(reg_settings),
                    }
                }
                if brain_vscaling is not None
                else {}
            ),
            "skull_constraint": skull_constraint,
            "scaling_source": scaling_source,
            "skull": {**_plain(skull_settings), **skull_info},
            "segmentation": {"method": "PV-HMRF (after FAST / Shattuck 2001)", **_plain(seg_settings), **seg_params},
            "vscaling_range": list(vscaling_range),
            "wm_fraction_range": list(wm_fraction_range),
            "threads": int(threads),
        },
        "stage_times_s": times,
    }


def _registration_key(reg_settings: dict) -> str:
    import json

    return json.dumps(_plain(reg_settings), sort_keys=True)


def _plain(settings: dict) -> dict:
    """Settings as JSON-friendly values (tuples -> lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


# --------------------------------------------------------------------------- FSL


def _fsl_sienax_command():
    """fslpy wrapper for ``sienax <input> -o <outdir> [options]`` (raises FSLNotPresent without FSL)."""
    from fsl.wrappers import wrapperutils as wutils

    @wutils.fslwrapper
    def sienax(input, output, extra=()):
        return ["sienax", str(input), "-o", str(output), *map(str, extra)]

    return sienax


def parse_sienax_report(text: str) -> dict:
    """Parse FSL's ``report.sienax``: VSCALING and (normalised, unnormalised) volumes in mm^3."""
    report: dict = {}
    for line in text.splitlines():
        match = re.match(
            r"^\s*(VSCALING|pgrey|vcsf|GREY|WHITE|BRAIN)\s+([-+0-9.eE]+)(?:\s+\(normalised\)\s+([-+0-9.eE]+))?", line
        )
        if not match:
            continue
        name, first, second = match.groups()
        if name == "VSCALING":
            report["vscaling"] = float(first)
        else:
            report[name] = {"normalised_mm3": float(first), "unnormalised_mm3": float(second) if second else None}
    missing = {"vscaling", "GREY", "WHITE", "BRAIN"} - set(report)
    if missing:
        raise ValueError(f"report.sienax lacks {sorted(missing)}")
    return report


def _fsl_sienax(img: nib.Nifti1Image, *, threads: int, options=(), **unused) -> dict:
    if unused:
        raise TypeError(f"unknown fsl-sienax settings {sorted(unused)}")
    if not os.environ.get("FSLDIR"):
        raise AnalysisFailure("fsl-sienax", "backend 'fsl-sienax' needs FSL (FSLDIR is not set)")
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="defacebench-sienax-") as tmp:
        t1 = Path(tmp) / "T1w.nii.gz"
        nib.save(img, str(t1))
        out = Path(tmp) / "sienax"
        with _stage("fsl-sienax", times, wrap=(Exception,)):
            _fsl_sienax_command()(t1, out, extra=tuple(options))
            report = parse_sienax_report((out / "report.sienax").read_text())
    ml = lambda key, kind: report[key][f"{kind}_mm3"] / 1000.0  # noqa: E731
    result = {
        "value": ml("BRAIN", "normalised"),
        "backend": BACKENDS["fsl-sienax"],
        "gm_ml": ml("GREY", "unnormalised"),
        "wm_ml": ml("WHITE", "unnormalised"),
        "csf_ml": ml("vcsf", "unnormalised") if "vcsf" in report else float("nan"),
        "brain_ml": ml("BRAIN", "unnormalised"),
        "gm_norm_ml": ml("GREY", "normalised"),
        "wm_norm_ml": ml("WHITE", "normalised"),
        "brain_norm_ml": ml("BRAIN", "normalised"),
        "vscaling": report["vscaling"],
        "parameters": {"sienax_options": list(options), "threads": int(threads)},
        "stage_times_s": times,
    }
    if "pgrey" in report:
        result["pgrey_norm_ml"] = ml("pgrey", "normalised")
    return result
