"""Visual reports of one image variant for blinded quality rating: the views of MRIQC's anatomical report.

MRIQC's individual anatomical reports (Esteban et al. 2017, PLoS ONE 12:e0184661) show mosaics
of slices, a background-enhanced mosaic in which noise, ghosts and wrap-around stand out, and
the brain mask's outline; Provins et al. (2025), PLoS Biol 23:e3003149, had raters judge such
reports of nondefaced and defaced images, blinded. Here every image variant gets the same views,
drawn without text:

- ``axial`` and ``sagittal``: mosaics of the whole head (slices evenly spaced over the head's
  extent, so the face region, or where it was, is in view);
- ``background``: the axial mosaic with the colour scale of MRIQC's noise view
  (``plot_mosaic(only_noise=True)``: 0th to 61st percentile of the nonzero voxels, ``viridis_r``),
  which saturates the head and shows the background's structure;
- ``mask``: the axial mosaic within the brain's extent with the brain mask's outline, when a
  mask is given.

Blinding: nothing in a report identifies the subject or the variant. No titles, labels or
annotations are drawn; slice positions come from a *layout reference* (the subject's nondefaced
image), so a defaced and a nondefaced variant of one subject show the same slices; PNG files
carry only the chunks needed to draw them (:func:`strip_png_metadata`: no text, time or
software chunks); file names are chosen by the caller (:mod:`defacebench.rating.blinding`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .. import io

#: Views drawn for every variant, in the order a rater sees them; ``mask`` only with a brain mask.
VIEWS = ("axial", "sagittal", "background", "mask")

#: What each view shows, for the rating page (no image-specific text).
VIEW_CAPTIONS = {
    "axial": "Axial slices of the whole head",
    "sagittal": "Sagittal slices of the whole head",
    "background": "Background enhanced: noise, ghosts and wrap-around stand out",
    "mask": "Brain mask outline",
}

#: Mosaic grids (rows, columns) per view.
GRIDS = {"axial": (3, 7), "sagittal": (2, 7), "background": (3, 7), "mask": (2, 7)}

#: Intensity window of the anatomical views: percentiles of the nonzero finite voxels (MRIQC's
#: ``plot_mosaic`` default).
ANATOMY_PERCENTILES = (0.5, 99.5)

#: Intensity window of the background view (MRIQC's ``only_noise``: everything above the 61st
#: percentile of the nonzero voxels saturates, so the dim background spans the colour scale).
NOISE_PERCENTILES = (0.0, 61.0)

#: A voxel is head (for the slice layout) above this fraction of the reference's 99.5th percentile.
HEAD_FRACTION = 0.1

#: Slices with fewer head voxels than this fraction of the fullest slice's are left out of the layout
#: (a tip of an ear, or noise above the threshold, would otherwise waste a panel).
MIN_SLICE_FRACTION = 0.05

#: Width of one mosaic panel in pixels; a mosaic is 7 panels wide.
PANEL_PX = 220

#: Colour of the brain mask's outline.
OUTLINE_RGB = (255, 48, 48)

#: Palette of a mosaic: intensity levels of the colour map, then the gaps' black and the outline's colour.
COLOUR_LEVELS = 254
GAP_INDEX = 254
OUTLINE_INDEX = 255

#: zlib level of the PNG files (3: within a few per cent of the smallest file, several times faster than 9).
PNG_COMPRESS_LEVEL = 3

#: PNG chunks kept: the ones needed to decode the image (ISO/IEC 15948, "critical chunks").
PNG_CRITICAL_CHUNKS = (b"IHDR", b"PLTE", b"IDAT", b"IEND")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReportError(ValueError):
    """An image that cannot be drawn as a report; the message names the file and the defect."""


@dataclass(frozen=True)
class Layout:
    """Slice indices per view on the RAS+ grid, from the layout reference."""

    axial: tuple[int, ...]
    sagittal: tuple[int, ...]
    brain_axial: tuple[int, ...] | None


def _canonical_data(img: nib.Nifti1Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    canonical = io.to_canonical(img)
    data = np.asarray(canonical.dataobj, dtype=np.float32)
    return np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0), tuple(
        float(z) for z in canonical.header.get_zooms()[:3]
    )


def _spaced(first: int, last: int, count: int) -> tuple[int, ...]:
    """``count`` slice indices evenly spaced strictly inside [first, last] (edges show little)."""
    positions = np.linspace(first, last, count + 2)[1:-1]
    return tuple(int(round(p)) for p in positions)


def _extent(mask: np.ndarray, axis: int) -> tuple[int, int]:
    """First and last slice along ``axis`` holding at least :data:`MIN_SLICE_FRACTION` of the fullest slice's voxels."""
    other = tuple(a for a in range(3) if a != axis)
    counts = mask.sum(axis=other)
    present = np.flatnonzero(counts >= MIN_SLICE_FRACTION * counts.max()) if counts.max() else np.zeros(0, int)
    if present.size == 0:
        return 0, mask.shape[axis] - 1
    return int(present[0]), int(present[-1])


def slice_layout(reference: np.ndarray, brain_mask: np.ndarray | None = None) -> Layout:
    """Where the mosaics cut, from a reference volume (RAS+): evenly over the head, and over the brain.

    The head is every voxel above :data:`HEAD_FRACTION` of the reference's 99.5th percentile.
    """
    finite = reference[reference > 0]
    threshold = HEAD_FRACTION * (np.percentile(finite, 99.5) if finite.size else 0.0)
    head = reference > threshold
    rows, cols = GRIDS["axial"]
    axial = _spaced(*_extent(head, 2), rows * cols)
    rows, cols = GRIDS["sagittal"]
    sagittal = _spaced(*_extent(head, 0), rows * cols)
    brain_axial = None
    if brain_mask is not None and brain_mask.any():
        rows, cols = GRIDS["mask"]
        brain_axial = _spaced(*_extent(brain_mask, 2), rows * cols)
    return Layout(axial, sagittal, brain_axial)


def _window(data: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    values = data[data != 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, percentiles))
    return low, high if high > low else low + 1.0


def _plane(data: np.ndarray, view_axis: int, index: int) -> np.ndarray:
    """A slice as an image array with rows top to bottom (anterior or superior up)."""
    plane = np.take(data, index, axis=view_axis)
    return np.flipud(plane.T)  # (x, y) -> rows y, columns x; flip so that +y (or +z) is up


def _panel(plane: np.ndarray, spacing: tuple[float, float], order: int) -> np.ndarray:
    """A slice resampled to :data:`PANEL_PX` columns with square pixels (``spacing``: mm per row, per column)."""
    rows_mm, cols_mm = plane.shape[0] * spacing[0], plane.shape[1] * spacing[1]
    shape = (max(1, int(round(PANEL_PX * rows_mm / cols_mm))), PANEL_PX)
    return ndimage.zoom(
        plane, (shape[0] / plane.shape[0], shape[1] / plane.shape[1]), order=order, grid_mode=True, mode="nearest"
    )


def _mosaic(
    data: np.ndarray, zooms, view_axis: int, indices, grid, *, cmap: str, window, outline: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The slices at ``indices`` tiled row by row, 2 black pixels apart: a palette image and its palette.

    Drawn as an array (matplotlib's colour maps, no figure or axes: the same pixels as an
    ``imshow`` mosaic in a fraction of the time, and a palette PNG a third the size of RGB).
    Intensities in ``window`` map to :data:`COLOUR_LEVELS` levels of ``cmap``; ``outline``: a
    mask whose border is drawn in :data:`OUTLINE_RGB`.
    """
    import matplotlib

    palette = np.zeros((256, 3), np.uint8)
    palette[:COLOUR_LEVELS] = (matplotlib.colormaps[cmap](np.linspace(0, 1, COLOUR_LEVELS))[:, :3] * 255).round()
    palette[GAP_INDEX] = (0, 0, 0)
    palette[OUTLINE_INDEX] = OUTLINE_RGB
    rows, cols = grid
    up, across = [z for a, z in enumerate(zooms) if a != view_axis][::-1]
    gap = 2
    panels = []
    for index in indices:
        plane = _panel(_plane(data, view_axis, index), (up, across), order=1)
        scaled = np.clip((plane - window[0]) / (window[1] - window[0]), 0.0, 1.0)
        levels = np.rint(scaled * (COLOUR_LEVELS - 1)).astype(np.uint8)
        if outline is not None:
            inside = _panel(_plane(outline.astype(np.float32), view_axis, index), (up, across), order=1) > 0.5
            levels[inside & ~ndimage.binary_erosion(inside, iterations=2)] = OUTLINE_INDEX
        panels.append(levels)
    height = panels[0].shape[0]
    mosaic = np.full((rows * height + (rows - 1) * gap, cols * PANEL_PX + (cols - 1) * gap), GAP_INDEX, np.uint8)
    for number, panel in enumerate(panels):
        row, col = divmod(number, cols)
        top, left = row * (height + gap), col * (PANEL_PX + gap)
        mosaic[top : top + height, left : left + PANEL_PX] = panel
    return mosaic, palette


def strip_png_metadata(data: bytes) -> bytes:
    """The PNG with only its critical chunks (no text, time, software, colour-profile or EXIF chunks).

    Matplotlib writes ``Software`` and may write other ancillary chunks; a report must carry
    nothing beyond the pixels (blinding). Raises :class:`ReportError` for bytes that are not PNG.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ReportError("not a PNG stream (missing the PNG signature)")
    out = [PNG_SIGNATURE]
    position = len(PNG_SIGNATURE)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if kind in PNG_CRITICAL_CHUNKS:
            out.append(data[position:end])
        position = end
    return b"".join(out)


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG stream, in order (for checks that a report carries no metadata)."""
    kinds, position = [], len(PNG_SIGNATURE)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kinds.append(data[position + 4 : position + 8])
        position += 12 + length
    return kinds


def _save_png(mosaic: tuple[np.ndarray, np.ndarray], path: Path) -> Path:
    """Write a palette image as a PNG (greyscale when it is grey) without metadata chunks, atomically."""
    import io as _bytes_io

    from PIL import Image  # matplotlib's own PNG writer; it adds no text chunks unless asked

    levels, palette = mosaic
    used = palette[np.unique(levels)]
    if (used == used[:, :1]).all():
        # grey only: a greyscale PNG, which (unlike a palette PNG) Pillow compresses with row filters
        picture = Image.fromarray(palette[levels, 0], mode="L")
    else:
        picture = Image.fromarray(levels, mode="P")
        picture.putpalette(palette.ravel().tolist())
    buffer = _bytes_io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    clean = strip_png_metadata(buffer.getvalue())
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(clean)
    return path


def _read_volume(path: Path, what: str) -> nib.Nifti1Image:
    try:
        return io.validate_input_image(path, allow_nonfinite=True)
    except io.BadInputImage as exc:
        raise ReportError(f"{what} {exc.path}: {exc.defect}") from exc


def render_views(
    image: str | Path,
    out_paths: dict[str, str | Path],
    *,
    brain_mask: str | Path | None = None,
    layout_reference: str | Path | None = None,
) -> dict[str, Path]:
    """Draw the views of one image variant to the PNG paths given per view name; return those written.

    ``out_paths`` maps view names (:data:`VIEWS`) to files; ``mask`` is drawn only when
    ``brain_mask`` is given (on the image's grid). ``layout_reference`` (the subject's
    nondefaced image, on the same grid) fixes the slice positions so that every variant of a
    subject shows the same slices; by default the image itself. Inputs are read, never written.
    """
    unknown = set(out_paths) - set(VIEWS)
    if unknown:
        raise ReportError(f"unknown view(s) {sorted(unknown)}; known: {', '.join(VIEWS)}")
    image = Path(image)
    img = _read_volume(image, "image")
    data, zooms = _canonical_data(img)
    mask = None
    if brain_mask is not None:
        mask_img = _read_volume(Path(brain_mask), "brain mask")
        if mask_img.shape[:3] != img.shape[:3]:
            raise ReportError(
                f"brain mask {brain_mask}: shape {mask_img.shape[:3]} differs from the image {image}'s {img.shape[:3]}"
            )
        mask = _canonical_data(mask_img)[0] > 0
    reference = data
    if layout_reference is not None and Path(layout_reference) != image:
        ref_img = _read_volume(Path(layout_reference), "layout reference")
        if ref_img.shape[:3] != img.shape[:3]:
            raise ReportError(
                f"layout reference {layout_reference}: shape {ref_img.shape[:3]} differs from the "
                f"image {image}'s {img.shape[:3]}"
            )
        reference = _canonical_data(ref_img)[0]
    layout = slice_layout(reference, mask)
    anatomy = _window(data, ANATOMY_PERCENTILES)
    written = {}
    for view, path in out_paths.items():
        if view == "axial":
            image = _mosaic(data, zooms, 2, layout.axial, GRIDS["axial"], cmap="gray", window=anatomy)
        elif view == "sagittal":
            image = _mosaic(data, zooms, 0, layout.sagittal, GRIDS["sagittal"], cmap="gray", window=anatomy)
        elif view == "background":
            image = _mosaic(
                data,
                zooms,
                2,
                layout.axial,
                GRIDS["background"],
                cmap="viridis_r",
                window=_window(data, NOISE_PERCENTILES),
            )
        else:  # mask
            if mask is None or layout.brain_axial is None:
                continue
            image = _mosaic(
                data, zooms, 2, layout.brain_axial, GRIDS["mask"], cmap="gray", window=anatomy, outline=mask
            )
        written[view] = _save_png(image, Path(path))
    return written
