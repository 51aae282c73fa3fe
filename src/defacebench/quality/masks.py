"""The masks and maps MRIQC's anatomical IQMs read, built from this project's parts.

Following the definitions of MRIQC 24.0.2's anatomical workflow (Esteban et
al. 2017, PLoS One 12:e0184661) and of Mortamet et al. (2009, "Automatic
quality assessment in structural brain magnetic resonance imaging", MRM
62:365-372), re-implemented (``defacebench-iqms``), on the image's RAS-canonical
grid (axis 1 anterior, axis 2 superior, as MRIQC's conformed image):

==================  ===========================================  ==============================================
mask / map          MRIQC 24.0.2                                 here
==================  ===========================================  ==============================================
brain               SynthStrip                                   deepbet (:func:`defacebench.brain.extract_brain`)
                                                                 or the caller's mask
INU field           N4 in SynthStrip's workflow                  N4 via antspyx (:mod:`defacebench.analysis.bias`,
                                                                 fitted in the brain, fast settings)
tissue maps         ANTs Atropos with template priors            PV-HMRF after FAST (:mod:`defacebench.analysis.
                                                                 segmentation`), hard labels by largest fraction
template priors     MNI152NLin2009cAsym TPMs (TemplateFlow),     nilearn's MNI152 2009 GM and WM maps, CSF = its
                    ANTs registration                            intracranial region minus GM and WM; one 12-
                                                                 parameter affine (:mod:`defacebench.analysis.
                                                                 registration`)
head                gradient threshold (:func:`head_mask`); it   the same steps; the dilated brain is added and
                    indexes with the dilated brain as integers,  the grid border is not dilated
                    setting the first two sagittal planes
                    instead of adding the brain
rotation            :func:`rotation_mask`                        the same definition
hat                 head mask filled below the inion plane and   the same, landmarks mapped by the affine; plane
                    (front half) the glabella plane               indices clipped to the grid (MRIQC's negative
                                                                 index wraps around)
artefact            :func:`artifact_mask` with a distance map     the same detection (the s.d. where the air's MAD
                    that 24.0.2 zeroes in the hat, so no voxel    is 0); the distance map by Mortamet's definition
                    is ever an artefact and QI1 = 0 for every     (distance to the head, normalised in the hat);
                    image (all 1,158 values in Provins et al.     ``artifact_distance_kind="mriqc-24.0.2"``
                    2025's S2 Data are 0)                         reproduces MRIQC's
air                 hat without artefacts                        the same
==================  ===========================================  ==============================================

:func:`iqm_inputs` builds them all from an image (and, optionally, its brain
mask) for :func:`defacebench.quality.iqms.image_quality_metrics`.
"""

from __future__ import annotations

import time
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..records import AnalysisFailure
from .iqms import GLABELLA_MNI, INION_MNI, MAD_TO_SD, IQMInputs

#: 18-neighbourhood (faces and edges), MRIQC's structuring element for openings and erosions.
STRUCTURE_18 = ndimage.generate_binary_structure(3, 2)
#: Settings of the head mask for human images (MRIQC's ``image_gradient`` and ``gradient_threshold`` defaults).
HEAD_MASK_SETTINGS = {"sigma": 4.0, "threshold": 15.0, "seed": 0}
ARTIFACT_DISTANCES = ("mortamet", "mriqc-24.0.2")


def _keep_two_largest(mask: np.ndarray) -> np.ndarray:
    """``mask`` with only its two largest face-connected components (MRIQC keeps two, e.g. the air on both sides)."""
    labels, n = ndimage.label(mask)
    if n <= 2:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    # ties go to the larger label, as a reverse sort of (size, label) pairs orders them
    order = sorted(range(n + 1), key=lambda label: (sizes[label], label), reverse=True)
    return np.isin(labels, order[:2])


def rotation_mask(image: np.ndarray) -> np.ndarray:
    """Empty frame voxels (zero or negative) left around the head by a rotation or padding (after MRIQC's RotationMask).

    Voxels <= 0, with the grid padded by one such voxel on every side, opened
    with the 18-neighbourhood; the two largest connected components are kept;
    fewer than 500 voxels in all means there is no such frame (empty mask).
    """
    frame = np.pad(np.asarray(image) <= 0, 1, constant_values=True)
    frame = ndimage.binary_opening(frame, structure=STRUCTURE_18)
    frame = _keep_two_largest(frame)[1:-1, 1:-1, 1:-1]
    if frame.sum() < 500:
        return np.zeros(frame.shape, bool)
    return frame


def head_mask(
    corrected: np.ndarray,
    brain: np.ndarray,
    wm_prior: np.ndarray,
    zooms,
    *,
    sigma: float = HEAD_MASK_SETTINGS["sigma"],
    threshold: float = HEAD_MASK_SETTINGS["threshold"],
    seed: int = HEAD_MASK_SETTINGS["seed"],
) -> np.ndarray:
    """The head (brain, skull, scalp, face) as MRIQC's ``headmsk_wf`` outlines it, after Mortamet et al. 2009.

    1. Intensities above the 99.98th percentile of the positive voxels (vessels,
       fat) are replaced by draws from the white matter's intensity
       distribution, its mean and s.d. weighted by ``wm_prior`` (MRIQC: the
       template's WM map in the image's space; random draws seeded by ``seed``).
    2. The image is scaled so that its 99.5th percentile is 100, the brain set
       to 100, and its gradient magnitude taken with a Gaussian of ``sigma``
       voxels (scaled per axis by 2 - zoom / min zoom), itself scaled so that its
       99.5th percentile is 100, the brain again 100.
    3. Gradient above ``threshold``, closed twice with the 18-neighbourhood
       iterated twice, eroded once, united with the brain dilated twice; the two
       largest components are kept and holes filled.
    """
    data = np.array(corrected, np.float32)
    brain = np.asarray(brain, bool)
    top = np.percentile(data[data > 0], 99.98)
    excess = data > top
    weights = np.clip(np.asarray(wm_prior, np.float64), 0, None)
    weights[excess] = 0
    if weights.sum() <= 0:
        raise AnalysisFailure("head_mask", "no white matter prior to draw replacement intensities from")
    wm_mean = np.average(data, weights=weights)
    wm_sd = np.sqrt(np.average((data - wm_mean) ** 2, weights=weights))
    data[excess] = np.random.default_rng(seed).normal(wm_mean, wm_sd, size=int(excess.sum()))

    data *= 100 / np.percentile(data, 99.5)
    data[brain] = 100
    zooms = np.asarray(zooms[:3], float)
    gradient = ndimage.gaussian_gradient_magnitude(data, sigma * (2 - zooms / zooms.min()))
    gradient *= 100.0 / np.percentile(gradient, 99.5)
    gradient[brain] = 100

    # MRIQC closes with the 18-neighbourhood iterated twice, twice: four dilations then four erosions
    # by the 18-neighbourhood itself are the same sets (dilation is associative), at a third of the cost
    mask = ndimage.binary_dilation(gradient > threshold, STRUCTURE_18, iterations=4)
    mask = ndimage.binary_erosion(mask, STRUCTURE_18, iterations=4)
    mask = ndimage.binary_erosion(mask, STRUCTURE_18)
    mask |= ndimage.binary_dilation(brain, STRUCTURE_18, iterations=4)
    mask = _keep_two_largest(mask)
    return ndimage.binary_fill_holes(mask, ndimage.iterate_structure(STRUCTURE_18, 2))


def landmark_planes(
    subject_to_mni: np.ndarray, affine: np.ndarray, glabella_mni=GLABELLA_MNI, inion_mni=INION_MNI
) -> tuple[float, float]:
    """Superior-axis voxel coordinates (axis 2 of the canonical grid) of the glabella and the inion.

    ``subject_to_mni``: 4x4 RAS matrix mapping the subject's world points to
    MNI (:func:`defacebench.analysis.registration.affine_to_mni`); ``affine``:
    the canonical grid's voxel-to-world matrix. MRIQC maps the same MNI points
    through its image-to-template transform.
    """
    world_to_voxel = np.linalg.inv(affine) @ np.linalg.inv(subject_to_mni)
    points = np.c_[np.array([glabella_mni, inion_mni], float), np.ones(2)]
    voxels = points @ world_to_voxel.T
    return float(voxels[0, 2]), float(voxels[1, 2])


def hat_mask(head: np.ndarray, glabella_k: float, inion_k: float) -> np.ndarray:
    """The air above the nasion-inion plane (Mortamet et al. 2009), as MRIQC 24's ArtifactMask cuts it.

    The head mask is filled below the inion's axial plane everywhere and below
    the glabella's in the anterior half of the grid (where signal leaks from the
    eyes along the phase-encoding axis); the hat is what stays outside it. Plane
    indices are truncated towards zero and clipped to the grid (MRIQC's slice
    with a negative index would wrap around).
    """
    nz = head.shape[2]
    inion = int(np.clip(int(inion_k), 0, nz))
    glabella = int(np.clip(int(glabella_k), 0, nz))
    filled = np.array(head, bool)
    filled[:, :, :inion] = True
    filled[:, filled.shape[1] // 2 :, :glabella] = True
    return ~filled


def artifact_distance(head: np.ndarray, hat: np.ndarray, kind: str = "mortamet") -> np.ndarray:
    """Distance of each hat voxel to the head, in voxels, over its maximum in the hat (0 elsewhere).

    Mortamet et al. (2009) leave out of the artefact search the air closest to
    the head (normalised distance < 0.1). ``kind="mriqc-24.0.2"`` reproduces
    MRIQC 24.0.2's ArtifactMask, which zeroes the distances *inside* the hat
    and normalises what remains (below the planes): every hat voxel is then
    "close", no artefact is ever found and QI1 is 0.
    """
    if kind not in ARTIFACT_DISTANCES:
        raise ValueError(f"artifact distance {kind!r}: choose from {ARTIFACT_DISTANCES}")
    distance = ndimage.distance_transform_edt(~np.asarray(head, bool))
    if kind == "mortamet":
        distance[~hat] = 0
    else:
        distance[hat] = 0
    top = distance.max()
    return distance / top if top > 0 else distance


def artifact_mask(image: np.ndarray, hat: np.ndarray, distance: np.ndarray, zscore: float = 10.0) -> np.ndarray:
    """Artefacts in the air (Mortamet et al. 2009, step 1; MRIQC's ``artifact_mask``).

    The positive hat intensities are divided by their median absolute deviation
    (normal-consistent); voxels above ``zscore`` are artefacts, except where
    ``distance`` < 0.1 (:func:`artifact_distance`); the result is opened with
    the 6-neighbourhood so that isolated noise spikes drop out. With fewer than
    10 positive air voxels there is nothing to detect: empty. Where the MAD is 0
    (quantised air), the s.d. of the positive air stands in for it (MRIQC divides
    by 0 there).
    """
    hat = np.asarray(hat, bool)
    found = np.zeros(hat.shape, bool)
    air = np.asarray(image, np.float64)[hat]
    positive = air > 0
    if positive.sum() < 10:
        return found
    values = air[positive]
    spread = np.median(np.abs(values - np.median(values)) / MAD_TO_SD)
    if spread <= 0:
        # quantised air (over half the positive voxels share one value, as in IXI's scans): MRIQC
        # divides by the zero MAD and calls every positive voxel an artefact; the s.d. is used
        # instead, as MRIQC's SNRd falls back from the MAD to the s.d.
        spread = values.std()
        if spread <= 0:
            return found
    air[positive] = values / spread
    found[hat] = air > zscore
    found[distance < 0.10] = False
    return ndimage.binary_opening(found, ndimage.generate_binary_structure(3, 1))


@lru_cache(maxsize=1)
def _template_tissue_maps() -> tuple:
    """nilearn's MNI152 2009 CSF (derived), GM and WM maps, their affine and non-zero box, read once per process."""
    from ..templates import mni152, mni152_intracranial

    gm_img = nib.load(str(mni152("gm")))
    # nilearn stores the probabilities as bytes, 255 = 1
    gm = np.asarray(gm_img.dataobj, np.float32) / 255.0
    wm = np.asarray(nib.load(str(mni152("wm"))).dataobj, np.float32) / 255.0
    intracranial, _ = mni152_intracranial()
    csf = np.clip(intracranial.astype(np.float32) - gm - wm, 0, None)
    for array in (csf, gm, wm):
        array.setflags(write=False)
    # the box of the template's non-zero voxels, grown by one (trilinear weights reach one voxel): outside
    # it every prior interpolates to exactly 0, so only the subject voxels that map into it need computing
    nonzero = np.argwhere((csf > 0) | (gm > 0) | (wm > 0))
    support = (np.maximum(nonzero.min(0) - 1, 0), np.minimum(nonzero.max(0) + 1, np.array(gm.shape) - 1))
    return csf, gm, wm, gm_img.affine, support


def template_priors(subject_to_mni: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """nilearn's MNI152 2009 CSF, GM and WM priors (3, ...) resampled (trilinear) onto the subject's grid.

    nilearn ships GM and WM maps only (as bytes, 255 = probability 1); the CSF prior is the template's
    intracranial region (:func:`defacebench.templates.mni152_intracranial`)
    minus GM and WM, clipped at 0. MRIQC uses TemplateFlow's
    MNI152NLin2009cAsym probability maps (not available offline). Only the box
    of the subject grid that the template's non-zero voxels cover is interpolated;
    the rest is 0 (as it would interpolate to).
    """
    csf, gm, wm, template_affine, (first, last) = _template_tissue_maps()
    subject_to_template = np.linalg.inv(template_affine) @ subject_to_mni @ affine
    template_to_subject = np.linalg.inv(subject_to_template)
    corners = np.array(np.meshgrid(*zip(first, last), indexing="ij")).reshape(3, -1).T
    ends = np.c_[corners, np.ones(len(corners))] @ template_to_subject.T
    low = np.clip(np.floor(ends[:, :3].min(0)).astype(int) - 1, 0, shape)
    high = np.clip(np.ceil(ends[:, :3].max(0)).astype(int) + 2, 0, shape)
    out = np.zeros((3,) + tuple(shape), np.float32)
    if np.any(high <= low):
        return out
    grid = np.mgrid[low[0] : high[0], low[1] : high[1], low[2] : high[2]].reshape(3, -1).astype(np.float64)
    coords = subject_to_template[:3, :3] @ grid + subject_to_template[:3, 3:4]
    box = tuple(slice(a, b) for a, b in zip(low, high))
    for k, prior in enumerate((csf, gm, wm)):
        values = ndimage.map_coordinates(prior, coords, order=1, mode="constant", cval=0.0)
        out[(k,) + box] = values.reshape(high - low)
    return out


def iqm_inputs(
    img: nib.Nifti1Image,
    brain_mask: np.ndarray | None = None,
    *,
    threads: int = 1,
    artifact_distance_kind: str = "mortamet",
    brain_backend: str = "deepbet",
    reused: dict | None = None,
) -> IQMInputs:
    """Every mask and map the IQMs of ``img`` need (:class:`~defacebench.quality.iqms.IQMInputs`), on its canonical grid.

    ``brain_mask``: on ``img``'s own voxel grid (e.g. the defacing
    preparation's or the NBV arm's deepbet mask); None: deepbet is run. Steps
    and times go to ``provenance``. ``threads`` > 1 makes the ANTs affine, hence
    the hat's planes, differ from run to run (ITK's threaded sums; sub-IXI012 at
    2 threads: matrix entries by up to 0.15, hat 277,840 vs 279,990 voxels, QI2
    0.0013 vs 0.0018); at 1 thread, set before the process's first ITK call, it
    is reproducible: use 1 where full and defaced images are compared. Raises
    :class:`~defacebench.records.AnalysisFailure` (stage ``brain_extraction``,
    ``bias_correction``, ``segmentation`` or ``registration``) when a step fails
    on this image.

    ``reused``: steps another arm already ran on this very image with the same settings, on its
    RAS-canonical grid, taken instead of running them again (:func:`reusable_from_nbv`):
    ``brain`` (a mask, instead of ``brain_mask``), ``inu_field``, ``partial_volumes`` with
    ``segmentation_parameters``, ``subject_to_mni``; ``source`` names the arm for the provenance.
    """
    from ..analysis import bias
    from ..analysis import registration as reg
    from ..analysis.nbv import set_threads, tissue_labels
    from ..analysis.segmentation import segment_tissues
    from ..brain import extract_brain

    set_threads(threads)
    times: dict[str, float] = {}
    cpu_times: dict[str, float] = {}
    clock, cpu_clock = time.perf_counter(), time.process_time()

    def lap(stage):
        # wall and CPU time (all threads) of each stage: on a shared machine they differ widely
        nonlocal clock, cpu_clock
        now, cpu_now = time.perf_counter(), time.process_time()
        times[stage], cpu_times[stage] = round(now - clock, 2), round(cpu_now - cpu_clock, 2)
        clock, cpu_clock = now, cpu_now

    if img.ndim == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if img.ndim != 3:
        raise AnalysisFailure("input", f"not a 3D volume (shape {img.shape})")
    canonical = nib.as_closest_canonical(img)
    image = np.nan_to_num(np.asarray(canonical.dataobj, np.float32))
    zooms = tuple(float(z) for z in canonical.header.get_zooms()[:3])
    reused = dict(reused or {})
    source = reused.pop("source", "another arm")
    taken: list[str] = []
    if reused.get("brain") is not None:
        brain = np.asarray(reused["brain"], bool)
        brain_source = f"reused: {source}"
    elif brain_mask is None:
        brain = extract_brain(canonical, backend=brain_backend)
        brain_source = f"{brain_backend} (defacebench.brain.extract_brain)"
    else:
        brain = (
            np.asarray(nib.as_closest_canonical(nib.Nifti1Image(np.asarray(brain_mask, np.uint8), img.affine)).dataobj)
            > 0
        )
        brain_source = "given by the caller"
    if brain.shape != image.shape:
        raise ValueError(f"brain mask shape {brain.shape} differs from the image's {image.shape}")
    lap("brain_mask")

    head_ants = None
    if reused.get("inu_field") is not None:
        field_map = np.asarray(reused["inu_field"]).astype(np.float32)
        taken.append("inu_field")
    else:
        head_ants = reg.to_ants(canonical)
        try:
            field_map = bias.n4_field(head_ants, brain).astype(np.float32)
        except (RuntimeError, ValueError) as exc:
            raise AnalysisFailure("bias_correction", str(exc)) from exc
    corrected = image / field_map
    lap("n4")

    if reused.get("partial_volumes") is not None:
        pv, seg_params = reused["partial_volumes"], reused.get("segmentation_parameters", {})
        taken.append("tissues")
    else:
        try:
            pv, seg_params = segment_tissues(corrected, brain)
        except ValueError as exc:
            raise AnalysisFailure("segmentation", str(exc)) from exc
    labels = tissue_labels(pv, brain)
    lap("segmentation")

    if reused.get("subject_to_mni") is not None:
        subject_to_mni = np.asarray(reused["subject_to_mni"], np.float64)
        taken.append("template_priors")
    else:
        head_ants = head_ants if head_ants is not None else reg.to_ants(canonical)
        try:
            subject_to_mni = reg.affine_to_mni(head_ants.new_image_like(corrected * brain))
        except (RuntimeError, ValueError) as exc:
            raise AnalysisFailure("registration", str(exc)) from exc
    if not np.isfinite(subject_to_mni).all():
        raise AnalysisFailure("registration", "subject-to-MNI affine is not finite")
    priors = template_priors(subject_to_mni, canonical.affine, image.shape)
    lap("registration_and_priors")

    rotation = rotation_mask(image)
    head = head_mask(corrected, brain, priors[2], zooms)
    glabella_k, inion_k = landmark_planes(subject_to_mni, canonical.affine)
    hat = hat_mask(head, glabella_k, inion_k)
    distance = artifact_distance(head, hat, artifact_distance_kind)
    artifacts = artifact_mask(image, hat, distance)
    lap("head_air_masks")

    provenance = {
        "implementation": "defacebench-iqms masks (after MRIQC 24.0.2 and Mortamet et al. 2009)",
        "grid": "RAS-canonical reorientation of the input (no resampling)",
        "brain": brain_source,
        "inu_field": {
            "method": "N4 (antspyx) fitted in the brain mask",
            **{k: list(v) if isinstance(v, tuple) else v for k, v in bias.N4_SETTINGS.items()},
        },
        "corrected": "image divided by the N4 field everywhere",
        "tissues": {
            "method": "PV-HMRF after FAST (defacebench.analysis.segmentation)",
            "class_means": seg_params["class_means"],
        },
        "template_priors": "nilearn MNI152 2009 GM, WM; CSF = intracranial - GM - WM; ANTs affine of the brain",
        "head": {"method": "gradient threshold after MRIQC's headmsk_wf", **HEAD_MASK_SETTINGS},
        "rotation": "voxels <= 0 opened, two largest components (after MRIQC's RotationMask)",
        "hat": {
            "glabella_mni": list(GLABELLA_MNI),
            "inion_mni": list(INION_MNI),
            "glabella_k": glabella_k,
            "inion_k": inion_k,
        },
        "artifact_distance": artifact_distance_kind,
        # steps taken from another arm's run on this very image, with the same settings, not run again
        "reused": {step: source for step in taken},
        "stage_times_s": times,
        "stage_cpu_s": cpu_times,
    }
    return IQMInputs(
        image=image,
        corrected=corrected,
        zooms=zooms,
        brain=brain,
        head=head,
        rotation=rotation,
        hat=hat,
        artifact=artifacts,
        air=hat & ~artifacts,
        partial_volumes=pv,
        labels=labels,
        inu_field=field_map,
        template_priors=priors,
        provenance=provenance,
    )


def reusable_from_nbv(kept: dict, img: nib.Nifti1Image) -> dict:
    """What :func:`iqm_inputs` may take (``reused``) from the NBV arm's run on ``img`` (:func:`~defacebench.analysis.nbv.keep_intermediates`).

    A step is taken only where the NBV arm ran it as :func:`iqm_inputs` would on the same voxels:
    the same canonical grid, N4 with :data:`~defacebench.analysis.bias.N4_SETTINGS` fitted in the
    same brain mask (its field on the whole grid), the brain affine with
    :data:`~defacebench.analysis.registration.AFFINE_SETTINGS`, and the partial volumes of
    :data:`~defacebench.analysis.segmentation.SEGMENTATION_SETTINGS` (segmented inside the brain,
    where the two arms' corrected images are the same voxels). The brain mask is the arm's own
    (deepbet by default: the backend :func:`iqm_inputs` would run). Anything else is left out
    and computed by :func:`iqm_inputs`.
    """
    from ..analysis import bias
    from ..analysis import registration as reg
    from ..analysis.segmentation import SEGMENTATION_SETTINGS

    canonical = nib.as_closest_canonical(img)
    kept_canonical = kept.get("canonical")
    if (
        kept.get("brain_mask") is None
        or kept_canonical is None
        or kept_canonical.shape[:3] != canonical.shape[:3]
        or not np.allclose(kept_canonical.affine, canonical.affine, atol=1e-6)
    ):
        return {}
    reused = {
        "brain": kept["brain_mask"],
        "source": f"the NBV arm's run on this image (brain mask: {kept.get('brain_backend', 'unknown')})",
    }

    def same(settings, defaults):
        return settings is not None and {k: settings.get(k) for k in defaults} == dict(defaults)

    if kept.get("inu_field") is not None and same(kept.get("n4"), bias.N4_SETTINGS):
        reused["inu_field"] = kept["inu_field"]
    if kept.get("partial_volumes") is not None and same(kept.get("segmentation"), SEGMENTATION_SETTINGS):
        reused["partial_volumes"] = kept["partial_volumes"]
        reused["segmentation_parameters"] = kept.get("segmentation_parameters", {})
    if kept.get("brain_to_mni") is not None and same(kept.get("registration"), reg.AFFINE_SETTINGS):
        reused["subject_to_mni"] = kept["brain_to_mni"]
    return reused
