"""Frontal surface render and face detection (privacy check)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from defacebench import io
from defacebench.privacy import detect_faces, frontal_render, render_and_detect
from defacebench.templates import pydeface_head


def _ball_head(shape=(80, 90, 70), orientation="RAS"):
    grid = np.indices(shape).astype(float)
    centre = np.array(shape)[:, None, None, None] / 2
    data = ((((grid - centre) / (np.array(shape)[:, None, None, None] * 0.4)) ** 2).sum(0) < 1) * 100.0
    img = nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    if orientation != "RAS":
        ornt = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(orientation)
        )
        img = img.as_reoriented(ornt)
    return img


def test_render_is_uint8_and_orientation_invariant():
    ras, pil = _ball_head(), _ball_head(orientation="PIL")
    a, b = frontal_render(ras), frontal_render(pil)
    assert a.dtype == np.uint8 and a.ndim == 2 and a.max() > 100
    np.testing.assert_array_equal(a, b)


def test_no_face_on_a_smooth_ellipsoid():
    assert detect_faces(frontal_render(_ball_head())) == 0


def test_face_found_on_the_pydeface_template_head(tmp_path):
    result = render_and_detect(nib.load(str(pydeface_head())), tmp_path / "template.png")
    assert result["face_detected"]
    assert Path(result["render"]).stat().st_size > 1000
    assert "haarcascade_frontalface_alt2" in result["detector"]


@pytest.mark.realdata
@pytest.mark.parametrize("subject", ["IXI012", "IXI013", "xa30", "otsu"])
def test_face_found_on_full_real_heads(real_bids, subject):
    img = io.load_image(real_bids / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz")
    assert detect_faces(frontal_render(img)) >= 1
