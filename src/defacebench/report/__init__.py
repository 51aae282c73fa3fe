"""The study report (issue 22): one self-contained HTML file a person reads.

:func:`write_report` reads a run's outputs (:mod:`.data`), checks the published
claims against them (:mod:`.claims`), draws the figures (:mod:`.figures`) and
writes ``<results>/report.html`` (:mod:`.html`), atomically. With
``figure_dir`` it also writes each embedded figure as a PNG there, for
``snakemake --report``.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from ..io import atomic_path, write_text
from . import claims
from .data import load_study
from .html import build_html

#: An embedded figure in the report: its alt text and base64 PNG.
_EMBEDDED = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def embedded_figures(document: str) -> list[tuple[str, bytes]]:
    """``(alt text, PNG bytes)`` of every figure embedded in a report."""
    return [(alt, base64.b64decode(data)) for alt, data in _EMBEDDED.findall(document)]


def figure_file_name(alt: str) -> str:
    """A file name from a figure's alt text: ``Dice distributions, cohort ms`` -> ``dice_distributions_cohort_ms.png``."""
    return re.sub(r"[^a-z0-9]+", "_", alt.lower()).strip("_") + ".png"


def write_report(
    results: str | Path,
    config: dict,
    out_html: str | Path,
    figure_dir: str | Path | None = None,
    quality_dir: str | Path | None = None,
    claims_yaml: str | Path | None = None,
    provins_yaml: str | Path | None = None,
) -> Path:
    """Write the study report of the run in ``results`` (configured by ``config``) to ``out_html``.

    ``quality_dir``: where the quality arm's tables are (default ``<results>/tables``);
    ``claims_yaml`` / ``provins_yaml``: other claim files than the packaged ones.
    Returns the report's path.
    """
    study = load_study(results, config, quality_dir)
    checked = claims.evaluate_claims(claims.load_claims(claims_yaml), study.cohorts, study.methods)
    checked += claims.provins_results(claims.load_published_entries(provins_yaml), study.quality, study.quality_claims)
    document = build_html(study, out_html, checked)
    out_html = write_text(document, out_html)
    if figure_dir is not None:
        figure_dir = Path(figure_dir)
        figure_dir.mkdir(parents=True, exist_ok=True)
        for alt, png in embedded_figures(document):
            with atomic_path(figure_dir / figure_file_name(alt)) as tmp:
                tmp.write_bytes(png)
    return out_html


__all__ = ["embedded_figures", "figure_file_name", "write_report"]
