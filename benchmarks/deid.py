"""Report de-identification on the annotated test set: per-type recall and precision, clinical-token preservation.

    .venv/bin/python benchmarks/deid.py [--show-errors] [--ages-kept] [--backend rules|presidio|rules+presidio]
        [--presidio-model DIR_OR_PACKAGE] [--presidio-threshold 0.4] [--files reports_holdout.txt ...]

``--backend`` scores another de-identification backend (``modalities/report/deid_backends.py``) instead of the rules;
Presidio needs ``pip install 'medclip[presidio]'`` and a local spaCy model (docs/deid.md).

Besides the optional Presidio backend, no other de-identification tool (scrubadub, Philter) is installed here, so the
side by side is with a naive scrubber of the kind often written in a hurry (every capitalised word not starting a
sentence is a name, every run of four or more digits an ID, slash/dash dates a date): it shows what the context rules
buy, above all for clinical content. Throughput is measured on the same reports.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modalities.report.config import ReportConfig  # noqa: E402
from modalities.report.deid import PLACEHOLDERS, Deidentifier, DeidRule  # noqa: E402
from modalities.report.deid_backends import TextDeidentifier, build_deidentifier, list_report_deid_backends  # noqa: E402
from modalities.report.deid_eval import DeidScore, read_corpus, score_corpus  # noqa: E402

CORPUS = sorted((ROOT / "tests" / "data" / "deid").glob("*.txt"))

NAIVE_RULES = (
    DeidRule("naive_email", "EMAIL", re.compile(r"\S+@\S+")),
    DeidRule("naive_date", "DATE", re.compile(r"\b\d{1,4}[/-]\d{1,2}[/-]\d{1,4}\b")),
    DeidRule("naive_phone", "PHONE", re.compile(r"\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")),
    DeidRule("naive_id", "ID", re.compile(r"\b\w*\d{4,}\w*\b")),
    DeidRule("naive_name", "NAME", re.compile(r"(?<=[a-z,;] )[A-Z][a-z]+(?: [A-Z][a-z]+)*")),
)


def _table(name: str, score: DeidScore, seconds: float, n_reports: int) -> list[str]:
    lines = [f"{name}: {n_reports / seconds:,.0f} reports/s"]
    lines.append(f"  {'type':<8} {'gold':>5} {'recall':>7} {'any-type':>9} {'found':>6} {'precision':>10}")
    for kind in PLACEHOLDERS:
        item = score.per_type[kind]
        if item.gold or item.found:
            lines.append(
                f"  {kind:<8} {item.gold:>5} {item.recall:>7.3f} {item.any_type_recall:>9.3f} {item.found:>6} "
                f"{item.precision:>10.3f}"
            )
    total = score.overall()
    lines.append(
        f"  {'all':<8} {total.gold:>5} {total.recall:>7.3f} {total.any_type_recall:>9.3f} {total.found:>6} "
        f"{total.precision:>10.3f}"
    )
    lines.append(f"  clinical spans preserved: {score.keep_preserved}/{score.keep_total} ({score.preservation:.3f})")
    return lines


def _timed(deidentifier: TextDeidentifier, reports, repeats: int = 5) -> tuple[DeidScore, float]:
    score = score_corpus(reports, deidentifier)
    start = time.perf_counter()
    for _ in range(repeats):
        for report in reports:
            deidentifier(report.text)
    return score, (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-errors", action="store_true", help="list misses, false alarms and damaged spans")
    parser.add_argument("--ages-kept", action="store_true", help="run with ages_over_89=False")
    parser.add_argument(
        "--backend", default="rules", choices=list_report_deid_backends(), help="de-identification backend"
    )
    parser.add_argument("--presidio-model", default="", help="spaCy model directory or installed package (Presidio)")
    parser.add_argument("--presidio-threshold", type=float, default=ReportConfig.presidio_score_threshold)
    parser.add_argument("--files", nargs="*", help="corpus file names in tests/data/deid (default: all)")
    args = parser.parse_args(argv)
    corpus = [path for path in CORPUS if not args.files or path.name in args.files]
    reports = read_corpus(corpus)
    n_phi = sum(len(report.phi) for report in reports)
    n_keep = sum(len(report.keep) for report in reports)
    print(
        f"test set: {len(reports)} reports, {n_phi} planted identifiers, {n_keep} clinical spans ({len(corpus)} files)"
    )
    config = ReportConfig(
        deidentify_ages_over_89=not args.ages_kept,
        deid_backend=args.backend,
        presidio_model=args.presidio_model,
        presidio_score_threshold=args.presidio_threshold,
    )
    deidentifier = build_deidentifier(config)
    ours, ours_seconds = _timed(deidentifier, reports)
    naive, naive_seconds = _timed(Deidentifier(rules=NAIVE_RULES), reports)
    identity = getattr(deidentifier, "identity", None)
    label = "medclip rules" if args.backend == "rules" else f"backend {args.backend} ({identity})"
    print("\n".join(_table(label, ours, ours_seconds, len(reports))))
    print("\n".join(_table("naive scrubber (baseline)", naive, naive_seconds, len(reports))))
    for path in corpus:
        part = score_corpus(read_corpus([path]), deidentifier)
        total = part.overall()
        print(
            f"  {path.name}: recall {total.recall:.3f}, precision {total.precision:.3f}, "
            f"clinical preserved {part.preservation:.3f}"
        )
    ratio = ours.preservation / naive.preservation if naive.preservation else float("inf")
    print(f"clinical preservation ratio medclip/naive: {ratio:.2f}")
    if args.show_errors:
        for title, kind, text in ours.missed:
            print(f"MISSED   [{kind}] {text!r} ({title})")
        for title, kind, text, rule in ours.false_alarms:
            print(f"EXTRA    [{kind}] {text!r} by {rule} ({title})")
        for title, text in ours.destroyed:
            print(f"DAMAGED  {text!r} ({title})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
