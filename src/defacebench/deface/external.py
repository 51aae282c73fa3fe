"""Classic defacing tools as optional backends, and any tool given as a command template."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from ..records import AnalysisFailure


def run_command(template: str, img: nib.Nifti1Image, extra: dict | None = None, timeout: int = 3600,
                name: str = "input.nii.gz") -> np.ndarray:
    """Run a command template (``{input}``, ``{output}`` placeholders) on ``img``; return the output's data.

    The image is written to a temporary file, so the tool never sees (or
    writes next to) the user's input. A missing executable, a non-zero exit or
    a missing or mis-shaped output is a :class:`AnalysisFailure` (stage ``deface``).
    """
    with tempfile.TemporaryDirectory(prefix="defacebench-") as tmp:
        # the copy keeps the input's BIDS name, which some tools read; the user's file is never touched
        (Path(tmp) / "in").mkdir()
        src, dst = Path(tmp) / "in" / name, Path(tmp) / "output.nii.gz"
        nib.save(img, src)
        fields = {"input": shlex.quote(str(src)), "output": shlex.quote(str(dst)),
                  **{k: shlex.quote(str(v)) for k, v in (extra or {}).items()}}
        command = template.format(**fields)
        program = shlex.split(command)[0]
        if shutil.which(program) is None:
            raise AnalysisFailure("deface", f"tool not found: {program!r} is not on PATH")
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise AnalysisFailure("deface", f"{program} exited with {proc.returncode}: {tail[0][:300]}")
        if not dst.exists():
            raise AnalysisFailure("deface", f"{program} wrote no output image")
        out = nib.load(str(dst))
        if out.shape[:3] != img.shape[:3]:
            raise AnalysisFailure("deface", f"{program} changed the grid: {out.shape} vs {img.shape}")
        return np.asanyarray(out.dataobj).reshape(img.shape[:3])


def freesurfer_mri_deface(img: nib.Nifti1Image, options: dict) -> np.ndarray | None:
    """FreeSurfer's ``mri_deface`` when it is installed and its two atlases are configured, else None."""
    brain_atlas = options.get("brain_atlas") or os.environ.get("MRI_DEFACE_BRAIN_ATLAS")
    face_atlas = options.get("face_atlas") or os.environ.get("MRI_DEFACE_FACE_ATLAS")
    if not (shutil.which("mri_deface") and brain_atlas and face_atlas):
        return None
    return run_command("mri_deface {input} {brain_atlas} {face_atlas} {output}", img,
                       {"brain_atlas": brain_atlas, "face_atlas": face_atlas})


def fsl_pydeface(img: nib.Nifti1Image) -> np.ndarray | None:
    """The ``pydeface`` command (FSL flirt registration) when FSL is installed, else None."""
    if not (os.environ.get("FSLDIR") and shutil.which("pydeface") and shutil.which("flirt")):
        return None
    return run_command("pydeface {input} --outfile {output} --force", img)
