"""Thumbnails of loaded studies, one renderer per modality, for the retrieval browser and the zero-shot report.

A renderer turns a sample loaded by the modality's own plugin (``plugin.load(reference)``: the same reader the model
saw, so a thumbnail shows what was embedded) into a small RGB picture:

- volumes (``ct``, ``oct``): the mid-slices of the three planes over their maximum intensity projections;
- slides (``wsi``): a mosaic of the first tissue patches;
- ECG (``ecg``): the first seconds of a few leads;
- 2-D images (``image``): the image;
- expression (``expression``): a bar chart of the most expressed genes.

Renderers live in ``THUMBNAILS``, keyed by modality name, so a third-party plugin registers its own
(``THUMBNAILS.register("mri", render_volume)``). A modality without one gets a tile saying there is no image for
it; a row that cannot be loaded or drawn gets a "could not load (reason)" tile, never an exception: one broken file
must not cost the user the whole page.

Thumbnails show patient images (which can hold burned-in names): they are written only to the local-only part of an
output folder (``out/local/``), never into shared metric files.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from medclip.registry import Registry
from medclip.types import ModalityError, Sample

from .plots import new_figure

TILE = 192  # pixels per side of one square tile: large enough to recognise anatomy, small enough for 100 per page
HOUNSFIELD_WINDOW = (-1000.0, 400.0)  # HU: lungs grey, soft tissue light, bone white; percentiles flatten CT to 2 tones
Renderer = Callable[[Sample, str, Any], Image.Image]  # (loaded sample, modality name, plugin) -> RGB picture

THUMBNAILS: Registry[Renderer] = Registry("thumbnail renderer")


def _grey(plane: np.ndarray, low: float, high: float) -> Image.Image:
    """A 2-D array -> an 8-bit grey picture, intensities clipped to [low, high] (a display window)."""
    scale = max(high - low, 1e-6)
    pixels = np.clip((plane.astype(np.float64) - low) / scale, 0.0, 1.0) * 255.0
    return Image.fromarray(pixels.astype(np.uint8), mode="L")


def _window(values: np.ndarray) -> tuple[float, float]:
    """1st-99th percentile display window: robust to metal, air and padding, for any intensity unit."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [1, 99])
    return float(low), float(high)


def _fit(picture: Image.Image, width: int, height: int) -> Image.Image:
    """Scale (down or up) into ``width`` x ``height`` keeping the aspect ratio, centred on black."""
    picture = picture.convert("RGB")
    factor = min(width / max(picture.width, 1), height / max(picture.height, 1))  # small volumes are enlarged too
    size = (max(1, round(picture.width * factor)), max(1, round(picture.height * factor)))
    picture = picture.resize(size, Image.Resampling.BILINEAR if factor < 1 else Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (width, height), "black")
    canvas.paste(picture, ((width - picture.width) // 2, (height - picture.height) // 2))
    return canvas


def render_volume(sample: Sample, name: str, plugin: Any = None) -> Image.Image:
    """Mid-slices of the three planes (top) over their maximum intensity projections (bottom), one display window
    (a fixed broad window for CT in Hounsfield units, the 1st-99th percentiles otherwise)."""
    volume = np.asarray(sample[name])
    volume = volume.reshape(volume.shape[-3:]) if volume.ndim > 3 and np.prod(volume.shape[:-3]) == 1 else volume
    if volume.ndim != 3:
        raise ModalityError("unexpected_shape", f"a volume thumbnail needs 3 dimensions, got {volume.ndim}")
    meta = sample.get(f"{name}_meta", {}) or {}
    low, high = HOUNSFIELD_WINDOW if meta.get("intensity") == "hounsfield" else _window(volume)
    cell = TILE // 3
    montage = Image.new("RGB", (TILE, TILE), "black")
    for axis in range(3):
        middle = np.take(volume, volume.shape[axis] // 2, axis=axis)  # (the two other axes)
        projection = volume.max(axis=axis)
        for row, plane in enumerate((middle, projection)):
            tile = _fit(_grey(np.rot90(plane), low, high), cell, TILE // 2)
            montage.paste(tile, (axis * cell, row * (TILE // 2)))
    return montage


def render_slide(sample: Sample, name: str, plugin: Any = None) -> Image.Image:
    """Up to four tissue patches of a slide (or the slide thumbnail when it loads as one picture), as a 2x2 mosaic."""
    patches = np.asarray(sample[name])
    if patches.ndim == 3:
        patches = patches[None]  # (1, H, W, C): one picture
    if patches.ndim != 4:
        raise ModalityError("unexpected_shape", f"a slide thumbnail needs (patches, H, W, C), got {patches.ndim} dims")
    if patches.shape[-1] not in (1, 3, 4) and patches.shape[1] in (1, 3, 4):
        patches = np.moveaxis(patches, 1, -1)  # (N, H, W, C) from channels-first
    count = min(4, len(patches))
    side = 1 if count == 1 else 2
    cell = TILE // side
    mosaic = Image.new("RGB", (TILE, TILE), "black")
    for i in range(count):
        patch = patches[i]
        if patch.dtype != np.uint8:
            low, high = _window(patch)
            patch = (np.clip((patch - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
        picture = Image.fromarray(patch[..., 0] if patch.shape[-1] == 1 else patch[..., :3])
        mosaic.paste(_fit(picture, cell, cell), ((i % side) * cell, (i // side) * cell))
    return mosaic


def render_image(sample: Sample, name: str, plugin: Any = None) -> Image.Image:
    """A 2-D image (channels first, grey or colour), in a 1st-99th percentile window."""
    image = np.asarray(sample[name], dtype=np.float64)
    if image.ndim == 2:
        image = image[None]  # (1, H, W)
    if image.ndim != 3:
        raise ModalityError("unexpected_shape", f"an image thumbnail needs (C, H, W), got {image.ndim} dims")
    low, high = _window(image)
    if image.shape[0] >= 3:
        pixels = np.clip((image[:3] - low) / max(high - low, 1e-6), 0, 1) * 255  # (3, H, W)
        picture = Image.fromarray(np.moveaxis(pixels, 0, -1).astype(np.uint8), mode="RGB")
    else:
        picture = _grey(image[0], low, high)
    return _fit(picture, TILE, TILE)


def _figure_picture(figure: Any) -> Image.Image:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def render_ecg(sample: Sample, name: str, plugin: Any = None) -> Image.Image:
    """The first 2.5 s of three leads (I, II and V1 when present), one trace per row, like a rhythm strip."""
    signal = np.asarray(sample[name], dtype=np.float64)
    if signal.ndim != 2:
        raise ModalityError("unexpected_shape", f"an ECG thumbnail needs (leads, samples), got {signal.ndim} dims")
    meta = sample.get(f"{name}_meta", {}) or {}
    rate = float(meta.get("sampling_rate") or 500.0)
    names = list(getattr(getattr(plugin, "config", None), "leads", None) or [])
    if len(names) != signal.shape[0]:
        names = [f"lead {i + 1}" for i in range(signal.shape[0])]
    wanted = [names.index(lead) for lead in ("I", "II", "V1") if lead in names] or list(range(min(3, len(names))))
    shown = signal[wanted, : int(2.5 * rate)]  # (3, T)
    figure = new_figure(TILE / 100, TILE / 100)
    for row, (lead, trace) in enumerate(zip(wanted, shown, strict=True)):
        axes = figure.add_axes((0.02, 1 - (row + 1) / len(wanted), 0.96, 1 / len(wanted)))
        axes.plot(np.arange(trace.size) / rate, trace, color="#b71c1c", linewidth=0.7)
        axes.text(0.01, 0.8, names[lead], transform=axes.transAxes, fontsize=6)
        axes.axis("off")
    return _figure_picture(figure)


def _gene_names(sample: Sample, name: str, plugin: Any) -> tuple[np.ndarray, list[str]]:
    """The cell's values with gene names when the fitted vocabulary can align them, else numbered genes."""
    values = np.asarray(sample[name], dtype=np.float64).reshape(-1)
    vocabulary = getattr(plugin, "vocabulary", None)
    transforms = getattr(plugin, "transforms", None)
    if vocabulary is not None and transforms is not None:
        try:
            aligned = np.asarray(transforms(train=False)(dict(sample))[name], dtype=np.float64).reshape(-1)
            genes = [str(gene) for gene in vocabulary.genes]
            if aligned.size == len(genes):
                return aligned, genes
        except Exception:  # noqa: BLE001 - names are a nicety: numbered genes are still a faithful picture
            pass
    return values, [f"gene {i + 1}" for i in range(values.size)]


def render_expression(sample: Sample, name: str, plugin: Any = None) -> Image.Image:
    """The eight most expressed genes of a cell or spot as horizontal bars (normalised values as embedded)."""
    values, genes = _gene_names(sample, name, plugin)
    top = np.argsort(-values, kind="stable")[:8]
    figure = new_figure(TILE / 100, TILE / 100)
    axes = figure.add_axes((0.42, 0.05, 0.55, 0.9))
    axes.barh(range(len(top)), values[top], color="#1565c0")
    axes.set_yticks(range(len(top)), [genes[i][:12] for i in top], fontsize=6)
    axes.invert_yaxis()
    axes.tick_params(axis="x", labelsize=5)
    return _figure_picture(figure)


def text_tile(text: str, background: str = "#f5f5f5") -> Image.Image:
    """A grey tile with a short wrapped message (a placeholder or a load failure)."""
    tile = Image.new("RGB", (TILE, TILE), background)
    ImageDraw.Draw(tile).multiline_text((8, TILE // 2 - 20), "\n".join(textwrap.wrap(text, 26)), fill="#424242")
    return tile


for _names, _renderer in (
    (("ct", "oct"), render_volume),
    (("wsi",), render_slide),
    (("ecg",), render_ecg),
    (("image",), render_image),
    (("expression",), render_expression),
):
    for _name in _names:
        THUMBNAILS.register(_name, _renderer)


def failure_reason(error: Exception) -> str:
    """The reason code of a load failure: never the message of a foreign exception, which may quote a path."""
    return str(getattr(error, "reason", None) or getattr(error, "reason_code", None) or type(error).__name__)


def render_reference(plugin: Any, name: str, reference: Any) -> Image.Image:
    """Load one study with its plugin and draw it; a placeholder or a "could not load (reason)" tile otherwise."""
    if name not in THUMBNAILS:
        return text_tile("no image for this modality")
    try:
        return THUMBNAILS.get(name)(plugin.load(reference), name, plugin)
    except Exception as error:  # noqa: BLE001 - one unreadable study becomes a tile, the page goes on
        return text_tile(f"could not load ({failure_reason(error)})", "#ffebee")


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def render_rows(plugin: Any, name: str, references: Mapping[int, Any], row_numbers: Sequence[int]) -> dict[int, bytes]:
    """PNG thumbnails of the given manifest rows (each drawn once), keyed by 1-based row number.

    Rows without a reference (not usable in this split) get a "could not load (not_in_split)" tile.
    """
    thumbnails: dict[int, bytes] = {}
    for row in dict.fromkeys(int(r) for r in row_numbers):
        if row not in references:
            thumbnails[row] = png_bytes(text_tile("could not load (not_in_split)", "#ffebee"))
            continue
        thumbnails[row] = png_bytes(render_reference(plugin, name, references[row]))
    return thumbnails
