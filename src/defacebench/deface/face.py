"""Is there a face to remove? Head tissue in front of and below the brain, far from it.

A skull-stripped scan (brain only) or one its provider has already defaced has
no face, and a defacing method has nothing to do on it: the template methods
then fail to register their head template (a head without scalp has no surface
to fit), or worse, place the template face on the brain and remove it (PyDeface
issues #6, #9, #41; issue 24 measured 6.2-6.4 % of a skull-stripped glioma
brain). This check says so before any method runs.

Criterion (:func:`face_presence`): the volume of head tissue
(:func:`defacebench.integrity.head_mask`: above 10 % of the robust maximum) in
the *face zone*, relative to the brain's volume. The face zone is defined in
world (RAS+) coordinates from the subject's own brain mask (deepbet, made in the
defacing preparation):

- anterior to the coronal plane a quarter of the brain's anterior-posterior
  length in front of the brain's centroid (the front of the frontal lobe and
  beyond: orbits, nose, mouth, chin);
- inferior to the axial plane through the brain's centroid (below the forehead);
- more than :data:`FACE_DISTANCE_MM` (20 mm) from the brain mask, beyond skull
  and scalp (together 5-15 mm over the frontal lobe) and beyond any rim of
  tissue a skull-stripping tool leaves around the brain.

The nose, lips, chin, cheeks and eyes lie there; a skull-stripped brain leaves
it empty, and defacing (which removes exactly these structures) leaves at most
the nasal cavity's back and the orbits' floor. Measured on the shared real
scans (bench/bench_face_check.py; docs/methods.md): heads with a face 286-866 ml of face
tissue, 19-53 % of their brain volume (otsu, with the nose tip at the edge of
the field of view, lowest); sub-ms12, defaced by its provider, 24 ml (1.6 %);
the skull-stripped sub-ms07 and sub-gbm7294 0 ml; twelve simulated heads (2 mm, pitch up to
15 degrees, some with the chin cut off) 26-54 %. A scan has a face when its
face tissue is at least :data:`FACE_TISSUE_FRACTION` (5 %) of its brain volume,
a threshold three times above the defaced scan and four below the lowest face.

The world axes must be anatomical (RAS+, as NIfTI and BIDS require); a head
strongly tilted in its scanner frame moves part of the face out of the zone,
which lowers the measure but, at a margin of four, does not reach the threshold
for the real heads above.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..integrity import head_mask

#: Tissue counts as face when farther than this from the brain mask (mm).
FACE_DISTANCE_MM = 20.0
#: A scan has a face when the face zone's tissue is at least this share of the brain's volume.
FACE_TISSUE_FRACTION = 0.05
#: The face zone starts this share of the brain's anterior-posterior length in front of its centroid.
ANTERIOR_SHARE = 0.25

CRITERION = (
    "head tissue more than {distance:g} mm from the brain mask, anterior to the brain's centroid by a quarter "
    "of its length and below it, at least {fraction:g} % of the brain's volume"
)


def _farther_than(mask: np.ndarray, where: np.ndarray, mm: float, zooms: np.ndarray) -> np.ndarray:
    """Voxels of ``where`` farther than ``mm`` from ``mask`` (a Euclidean distance map, Maurer et al. 2003).

    The map is computed on ``where``'s bounding box grown by ``mm``: every voxel
    of ``mask`` within ``mm`` of a voxel of ``where`` lies in it, so the test is
    exact while the map covers a fraction of a 1 mm grid.
    """
    idx = np.nonzero(where)
    grow = np.ceil(mm / zooms).astype(int) + 1
    box = tuple(slice(max(int(i.min()) - g, 0), min(int(i.max()) + g + 1, n)) for i, g, n in zip(idx, grow, mask.shape))
    out = np.zeros(mask.shape, bool)
    if mask[box].any():
        out[box] = ndimage.distance_transform_edt(~mask[box], sampling=zooms) > mm
    else:
        out[box] = True
    return out & where


def face_presence(img: nib.Nifti1Image, brain_mask: np.ndarray) -> dict:
    """Whether ``img`` shows a face, by the criterion of this module, with the figures behind the verdict.

    ``brain_mask`` is on ``img``'s grid. Returns ``has_face`` (bool),
    ``face_tissue_ml``, ``brain_ml``, ``face_tissue_fraction`` (of the brain's
    volume), ``threshold_fraction``, ``criterion`` and ``reason`` (a sentence
    for the record). An empty brain mask gives ``has_face`` None (no verdict).
    """
    brain = np.asarray(brain_mask, bool)
    zooms = np.asarray(img.header.get_zooms()[:3], float)
    voxel_ml = float(np.prod(zooms)) / 1000
    out = {
        "threshold_fraction": FACE_TISSUE_FRACTION,
        "criterion": CRITERION.format(distance=FACE_DISTANCE_MM, fraction=100 * FACE_TISSUE_FRACTION),
    }
    if brain.shape != img.shape[:3] or not brain.any():
        return {**out, "has_face": None, "reason": "no brain mask on the image's grid: face presence not checked"}
    data = np.asanyarray(img.dataobj)
    tissue = head_mask(data.reshape(img.shape[:3]))
    # world coordinates along the anterior (y) and superior (z) axes, for every voxel
    index = np.ogrid[tuple(slice(0, n) for n in brain.shape)]
    affine = img.affine.astype(np.float32)
    y = sum(affine[1, k] * index[k].astype(np.float32) for k in range(3)) + affine[1, 3]
    z = sum(affine[2, k] * index[k].astype(np.float32) for k in range(3)) + affine[2, 3]
    y_brain, z_brain = y[brain], z[brain]
    front = y_brain.mean() + ANTERIOR_SHARE * (y_brain.max() - y_brain.min())
    zone = (y > front) & (z < z_brain.mean()) & tissue & ~brain
    if zone.any():
        zone &= _farther_than(brain, zone, FACE_DISTANCE_MM, zooms)
    face_ml = float(zone.sum()) * voxel_ml
    brain_ml = float(brain.sum()) * voxel_ml
    fraction = face_ml / brain_ml
    has_face = bool(fraction >= FACE_TISSUE_FRACTION)
    reason = (
        f"{face_ml:.0f} ml of head tissue in the face zone, {100 * fraction:.1f} % of the brain's {brain_ml:.0f} ml"
        f" ({'at least' if has_face else 'below'} {100 * FACE_TISSUE_FRACTION:g} %)"
    )
    if not has_face:
        reason = "no face to remove (skull-stripped or already defaced): " + reason
    return {
        **out,
        "has_face": has_face,
        "face_tissue_ml": round(face_ml, 1),
        "brain_ml": round(brain_ml, 1),
        "face_tissue_fraction": round(fraction, 4),
        "reason": reason,
    }
