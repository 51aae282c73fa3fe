"""The workflow's two privacy steps: one image's record (rule ``privacy_image``), a cohort's attack (``privacy_attack``).

A step that cannot run records ``status: failed`` with the stage and the reason (a defacing that
failed, an image with no head, a missing face model); the attack counts such an image as not
identified and the table reports how many there were.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .. import io
from ..records import AnalysisFailure
from .surface import VIEWPOINTS


def image_for_render(images: dict[str, str]) -> tuple[str, str]:
    """The modality and path rendered for a subject: the T1w (faces show best there), else the first image."""
    if "T1w" in images:
        return "T1w", images["T1w"]
    modality = sorted(images)[0]
    return modality, images[modality]


def image_record(
    image: str | Path,
    render_dir: str | Path,
    viewpoints: list[str] | None = None,
    deface_record: str | Path | None = None,
    modality: str = "T1w",
    size: int | None = None,
) -> dict:
    """The privacy record of one image (:func:`.image.privacy_record`), or a failure with its reason.

    ``deface_record``: the defacing record of a defaced image (its ``images[modality]`` entry says
    whether this image was written).
    """
    from .image import privacy_record
    from .surface import RENDER_SIZE

    views = {name: VIEWPOINTS[name] for name in (viewpoints or list(VIEWPOINTS))}
    record: dict = {"image": Path(image).name, "modality": modality, "viewpoints": list(views)}
    if deface_record is not None:
        defacing = io.read_json(deface_record)
        entry = defacing.get("images", {}).get(modality, {})
        if defacing.get("status") == "failed" or entry.get("status") == "failed" or not Path(image).exists():
            reason = entry.get("message") or defacing.get("message") or "the defaced image was not written"
            return {**record, "status": "failed", "failed_stage": "defacing", "message": reason}
    try:
        # the analyses' own input check: a truncated, empty or non-NIfTI file is a recorded failure here too
        img = io.validate_input_image(image, allow_nonfinite=True)
    except AnalysisFailure as failure:
        return {**record, "status": "failed", "failed_stage": failure.stage, "message": failure.reason}
    started = time.process_time()
    try:
        record.update(privacy_record(img, render_dir, views, size=size or RENDER_SIZE))
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        # no head in the image, no face model installed, no OpenGL context: a reason, never a made-up value
        return {**record, "status": "failed", "failed_stage": "privacy", "message": f"{type(exc).__name__}: {exc}"}
    return {**record, "status": "ok", "cpu_s": time.process_time() - started}


def _table(path: str | Path | None) -> pd.DataFrame | None:
    if path is None or not Path(path).exists():
        return None
    return pd.read_csv(path, sep="\t")


def cohort_privacy(
    record_paths: list[str],
    methods: list[str],
    viewpoints: list[str],
    cohort: str,
    out_tsv: str | Path,
    out_md: str | Path,
    out_png: str | Path,
    defacing_tsv=None,
    agreement_tsv=None,
    failures_tsv=None,
) -> pd.DataFrame:
    """Read a cohort's privacy records and write its privacy table and trade-off figure."""
    from .report import write_privacy_outputs

    records = [io.read_json(p) for p in record_paths]
    return write_privacy_outputs(
        records,
        methods,
        viewpoints,
        cohort,
        out_tsv,
        out_md,
        out_png,
        defacing=_table(defacing_tsv),
        agreement=_table(agreement_tsv),
        failures=_table(failures_tsv),
    )
