"""The embedding-health block of every evaluation recipe: numbers for metrics.json, a report section and a map.

Every evaluation (zero-shot, retrieval, probe, embedding export) looks at embeddings it has already computed; this
module turns them into the same ``diagnostics`` block, so four recipes do not each repeat it:

- ``embedding_health`` (``diagnostics.py``) on the evaluated rows: per modality uniformity, effective rank and
  centroid norm; per pair of modalities the modality gap and alignment; per site the centroid separation and the
  site probe (when the manifest has a ``site`` column);
- gaps to *reference* sets that are not manifest rows, e.g. zero-shot's prompt embeddings: the distance between a
  modality's centroid and the centroid of the prompts it is compared with;
- ``embedding_map.png``: a 2-D PCA of every modality's unit embeddings in one space (a modality gap shows as two
  clouds), coloured by modality and, in a second panel, by site, because a person reads a gap or a site cluster from
  a picture faster than from a table.

The numbers are computed on the rows the recipe evaluates (its ``split``); the block records which.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..embedding import EmbeddedRows, LoaderOptions, embed_split
from .diagnostics import DEFAULT_MAX_ROWS, embedding_health, modality_gap, subsample_rows
from .evaluation_data import check_split_name, open_evaluation_data
from .plots import class_colors, new_figure, save_figure
from .report import ReportSection

MAP_FILE = "embedding_map.png"
MAP_MAX_POINTS = 2000  # per modality: more points only hide each other (and cost PCA time)
MAX_SITE_COLOURS = 20  # beyond this, sites share colours; the table still lists each site


@dataclass
class EmbeddingDiagnostics:
    """The ``diagnostics`` block of a recipe's metrics.json and the report sections that show it."""

    block: dict[str, Any] | None
    sections: list[ReportSection] = field(default_factory=list)


def recipe_diagnostics(
    cfg: Any,
    rows: EmbeddedRows,
    modalities: Sequence[str],
    references: Mapping[str, Any] | None = None,
    model: Any = None,
) -> EmbeddingDiagnostics:
    """``diagnose_embeddings`` as a recipe switch: reads ``diagnostics``, ``diagnostics_max_rows``, ``out``,
    ``split`` and ``seed`` from the recipe's config; ``diagnostics: false`` gives a None block and no section.

    A recipe that embeds one modality (zero-shot, probe) has no pair to measure a gap on; its
    ``diagnostics_modalities`` (e.g. ``[report]``) are embedded on the same split with ``model`` for the diagnostics
    only, so the gap and alignment to them are reported too.
    """
    if not cfg.diagnostics:
        return EmbeddingDiagnostics(None)
    companions = [name for name in getattr(cfg, "diagnostics_modalities", []) if name not in modalities]
    if companions:
        rows = merge_rows(rows, embed_companions(model, cfg, companions), [*modalities, *companions])
        modalities = [*modalities, *companions]
    return diagnose_embeddings(
        rows, modalities, cfg.out, cfg.split, references, cfg.diagnostics_max_rows or None, getattr(cfg, "seed", 0)
    )


def diagnose_embeddings(
    rows: EmbeddedRows,
    modalities: Sequence[str],
    out: str | os.PathLike,
    split: str,
    references: Mapping[str, Any] | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    seed: int = 0,
    draw_map: bool = True,
) -> EmbeddingDiagnostics:
    """Embedding health of the evaluated rows, for metrics.json and the report.

    Args:
        rows: embedded manifest rows (``embed_split``); row i of every modality is one study.
        modalities: the modalities of ``rows`` to diagnose (each must be present in at least one row).
        out: the recipe's output folder (``embedding_map.png`` is written there).
        split: the split the rows come from, recorded in the block.
        references: name -> (K, D) embeddings that are not manifest rows (zero-shot prompts); their gap to every
            modality's centroid is reported, and they are drawn on the map.
        max_rows: uniformity and effective rank use at most this many rows per modality (``embedding_health``).
        seed: of the subsample, the site probe's folds and the map's point sample.
        draw_map: write ``embedding_map.png``.

    Returns:
        ``EmbeddingDiagnostics``; ``block`` holds ``split``, every key of ``embedding_health`` and, with references,
        ``references: {name: {"n_rows", "gap": {modality: distance}}}``, and ``map`` (the PNG's name or None).
    """
    modalities = [name for name in modalities if rows.present[name].any()]
    if not modalities:
        raise ValueError("no embedded row to diagnose")
    has_sites = any(site not in (None, "") for site in rows.sites)
    health = embedding_health(
        {name: rows.embeddings[name] for name in modalities},
        masks={name: rows.present[name] for name in modalities},
        sites=rows.sites if has_sites else None,
        patients=list(rows.patients),
        max_rows=max_rows,
        seed=seed,
    )
    block: dict[str, Any] = {"split": split, **health}
    if references:
        block["references"] = {
            name: {
                "n_rows": int(len(vectors)),
                "gap": {
                    modality: modality_gap(rows.embeddings[modality], vectors, rows.present[modality]).distance
                    for modality in modalities
                },
            }
            for name, vectors in references.items()
        }
    block["map"] = None
    if draw_map:
        block["map"] = plot_modality_map(rows, modalities, Path(out) / MAP_FILE, references, seed).name
    return EmbeddingDiagnostics(block, diagnostics_sections(block))


def embed_companions(model: Any, cfg: Any, modalities: Sequence[str]) -> EmbeddedRows:
    """The rows of the recipe's ``split`` embedded for ``modalities`` (the manifest re-read with their columns)."""
    data = open_evaluation_data(model, cfg.manifest, list(modalities), cfg.root)
    dataset = data.dataset(model, list(modalities), check_split_name(cfg.split))
    return embed_split(model, dataset, list(modalities), LoaderOptions.of(cfg))[0]


def merge_rows(first: EmbeddedRows, second: EmbeddedRows, modalities: Sequence[str]) -> EmbeddedRows:
    """The union of two embeddings of one manifest's rows, matched by manifest row number (for diagnostics only:
    labels and targets are dropped). A row embedded in only one of them has the other's modalities absent."""
    numbers = np.union1d(first.row_numbers, second.row_numbers)  # (N,) sorted
    patients, studies = np.empty(len(numbers), dtype=object), np.empty(len(numbers), dtype=object)
    sites: list[str | None] = [None] * len(numbers)
    embeddings: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for source in (second, first):  # the first wins where both describe a row (they agree: one manifest)
        positions = np.searchsorted(numbers, source.row_numbers)
        patients[positions], studies[positions] = source.patients, source.studies
        for position, site in zip(positions, source.sites, strict=True):
            sites[position] = site
        for name in modalities:
            if name not in source.embeddings:
                continue
            values = source.embeddings[name]
            if name not in embeddings:
                embeddings[name] = np.zeros((len(numbers), values.shape[1]), dtype=values.dtype)
                present[name] = np.zeros(len(numbers), dtype=bool)
            embeddings[name][positions[source.present[name]]] = values[source.present[name]]
            present[name][positions] |= source.present[name]
    return EmbeddedRows(
        numbers,
        patients.astype(str),
        studies.astype(str),
        sites,
        np.zeros((len(numbers), 0), dtype=np.float32),
        np.zeros((len(numbers), 0), dtype=np.float32),
        embeddings,
        present,
    )


def plot_modality_map(
    rows: EmbeddedRows,
    modalities: Sequence[str],
    path: str | os.PathLike,
    references: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """2-D PCA of the modalities' unit embeddings together: left coloured by modality, right by site.

    The PCA is fitted on every drawn point at once, so the distance between two modalities' clouds on the left is
    (a projection of) the modality gap. At most ``MAP_MAX_POINTS`` rows per modality are drawn (a seeded sample).
    """
    from sklearn.decomposition import PCA

    references = references or {}
    points, modality_of, site_of = [], [], []
    for name in modalities:
        present = np.flatnonzero(rows.present[name])
        chosen = present[subsample_rows(len(present), MAP_MAX_POINTS, seed)]
        points.append(rows.embeddings[name][chosen])
        modality_of += [name] * len(chosen)
        site_of += ["" if rows.sites[i] is None else str(rows.sites[i]) for i in chosen]
    for name, vectors in references.items():
        points.append(np.asarray(vectors, dtype=np.float64))
        modality_of += [name] * len(vectors)
        site_of += [""] * len(vectors)
    stacked = np.concatenate([np.asarray(p, dtype=np.float64) for p in points])  # (P, D)
    unit = stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
    projected = PCA(n_components=2, random_state=seed).fit_transform(unit)  # (P, 2)
    modality_of, site_of = np.asarray(modality_of), np.asarray(site_of)
    sites = sorted(set(site_of) - {""})
    figure = new_figure(12.0 if sites else 6.5, 5.5)
    axes = figure.add_subplot(1, 2 if sites else 1, 1)
    colours = class_colors(max(len(modalities) + len(references), 1))
    for colour, name in zip(colours, [*modalities, *references], strict=False):
        drawn = modality_of == name
        is_reference = name in references
        axes.scatter(
            projected[drawn, 0],
            projected[drawn, 1],
            s=60 if is_reference else 8,
            marker="*" if is_reference else "o",
            color=colour,
            edgecolors="black" if is_reference else "none",
            alpha=1.0 if is_reference else 0.5,
            label=f"{name} ({int(drawn.sum())})",
        )
    axes.set_title("Embeddings by modality (PCA of unit vectors)")
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.legend(loc="best", fontsize=8, markerscale=1.5)
    if sites:
        by_site = figure.add_subplot(1, 2, 2, sharex=axes, sharey=axes)
        site_colours = class_colors(min(len(sites), MAX_SITE_COLOURS))
        markers = dict(zip(modalities, "o^sDvP", strict=False))
        for index, site in enumerate(sites):
            for name in modalities:
                drawn = (site_of == site) & (modality_of == name)
                if drawn.any():
                    by_site.scatter(
                        projected[drawn, 0],
                        projected[drawn, 1],
                        s=8,
                        marker=markers.get(name, "o"),
                        color=site_colours[index % len(site_colours)],
                        alpha=0.5,
                        label=f"{site} / {name}" if len(modalities) > 1 else site,
                    )
        by_site.set_title("The same points by site")
        by_site.set_xlabel("PC 1")
        by_site.legend(loc="best", fontsize=7, markerscale=1.5)
    return save_figure(figure, path)


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def diagnostics_sections(block: Mapping[str, Any]) -> list[ReportSection]:
    """The report section of a ``diagnose_embeddings`` block: one table, the reading guide and the map."""
    table = []
    for name, entry in block["modalities"].items():
        table += [
            [name, "uniformity (0 = collapse, lower = more spread)", _number(entry["uniformity"])],
            [name, f"effective rank (of {entry['dimension']} dimensions)", _number(entry["effective_rank"], 1)],
            [name, "centroid norm (0 = centred, 1 = one direction)", _number(entry["centroid_norm"])],
        ]
    for pair, entry in block["pairs"].items():
        table += [
            [pair, f"modality gap ({entry['n_paired']} paired rows)", _number(entry["gap"])],
            [pair, "alignment (0 = pairs identical, 2 = orthogonal)", _number(entry["alignment"])],
            [pair, "mean paired cosine", _number(entry["mean_paired_cosine"])],
        ]
    for reference, entry in (block.get("references") or {}).items():
        for name, gap in entry["gap"].items():
            table.append([f"{name}-{reference}", f"gap to the {entry['n_rows']} {reference} embeddings", _number(gap)])
    for name, entry in (block.get("sites") or {}).items():
        if "skipped" in entry:
            table.append([name, "site separation", f"not computed: {entry['skipped']}"])
            continue
        table.append([name, "site variance fraction (share between sites)", _number(entry["site_variance_fraction"])])
        probe = entry["site_probe"]
        if "skipped" in probe:
            table.append([name, "site probe", f"not computed: {probe['skipped']}"])
        else:
            table.append(
                [
                    name,
                    f"site probe balanced accuracy ({probe['folds']})",
                    f"{probe['balanced_accuracy']:.3f} (chance {probe['chance_balanced_accuracy']:.3f})",
                ]
            )
    paragraphs = [
        f"Label-free numbers on the {block['n_rows']} evaluated rows of split '{block['split']}' (docs/diagnostics.md "
        "explains each). Uniformity near 0 or a small effective rank means collapse; a large modality gap hurts "
        "searches that mix modalities; a site probe well above chance means the hospital or scanner is written into "
        "the embedding (a shortcut a downstream model can learn)."
    ]
    subsampled = [name for name, entry in block["modalities"].items() if entry["subsampled"]]
    if subsampled:
        paragraphs.append(
            f"Uniformity and effective rank of {', '.join(subsampled)} use a seeded sample of {block['max_rows']} rows."
        )
    images = [block["map"]] if block.get("map") else []
    return [ReportSection("Embedding health", paragraphs, ["modality", "number", "value"], table, images)]


def read_exported_rows(
    folder: str | os.PathLike,
    modalities: Sequence[str],
    site_of: Mapping[int, str | None],
    max_rows: int | None = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> EmbeddedRows:
    """The rows of an embedding export (``medclip embed``'s Parquet parts) as ``EmbeddedRows``, for diagnostics.

    An export can hold millions of studies, so at most ``max_rows`` manifest rows (a seeded sample; None = all) are
    read back, one part at a time. Labels and targets are not part of an export: the rows carry none.

    Args:
        folder: the ``embeddings`` folder of parts.
        modalities: the exported modalities.
        site_of: manifest row number -> site (None where the manifest has none).
        max_rows: most manifest rows read back; seed: of the sample.
    """
    import pyarrow.parquet as pq

    parts = sorted(Path(folder).glob("part-*.parquet"))
    numbers = [pq.read_table(part, columns=["row"]).column("row").to_numpy() for part in parts]
    every_row = np.unique(np.concatenate(numbers)) if numbers else np.zeros(0, np.int64)
    chosen = every_row[subsample_rows(len(every_row), max_rows, seed)]  # sorted manifest row numbers
    patients, studies = np.empty(len(chosen), dtype=object), np.empty(len(chosen), dtype=object)
    embeddings: dict[str, np.ndarray] = {}
    present = {name: np.zeros(len(chosen), dtype=bool) for name in modalities}
    for part in parts:
        table = pq.read_table(part)
        rows = table.column("row").to_numpy()
        wanted = np.isin(rows, chosen)
        if not wanted.any():
            continue
        vectors = table.column("vector").combine_chunks()
        width = vectors.type.list_size
        values = vectors.flatten().to_numpy().reshape(-1, width)[wanted]  # (n, D)
        positions = np.searchsorted(chosen, rows[wanted])
        names = np.asarray(table.column("modality").to_pylist(), dtype=object)[wanted]
        patients[positions] = np.asarray(table.column("patient").to_pylist(), dtype=object)[wanted]
        studies[positions] = np.asarray(table.column("study").to_pylist(), dtype=object)[wanted]
        for name in modalities:
            mine = names == name
            if name not in embeddings:
                embeddings[name] = np.zeros((len(chosen), width), dtype=np.float32)
            embeddings[name][positions[mine]] = values[mine]
            present[name][positions[mine]] = True
    for name in modalities:
        embeddings.setdefault(name, np.zeros((len(chosen), 0), dtype=np.float32))
    return EmbeddedRows(
        chosen.astype(np.int64),
        patients.astype(str),
        studies.astype(str),
        [site_of.get(int(row)) for row in chosen],
        np.zeros((len(chosen), 0), dtype=np.float32),
        np.zeros((len(chosen), 0), dtype=np.float32),
        embeddings,
        present,
    )


def export_diagnostics(
    cfg: Any, folder: str | os.PathLike, modalities: Sequence[str], site_of: Mapping[int, str | None]
) -> EmbeddingDiagnostics:
    """``recipe_diagnostics`` of an embedding export: the exported rows read back (at most ``diagnostics_max_rows``)."""
    if not cfg.diagnostics:
        return EmbeddingDiagnostics(None)
    rows = read_exported_rows(folder, modalities, site_of, cfg.diagnostics_max_rows or None)
    if len(rows) == 0:
        return EmbeddingDiagnostics({"skipped": "no exported row"})
    return recipe_diagnostics(cfg, rows, modalities)
