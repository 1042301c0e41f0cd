"""The registry of de-identification backends: ``report.deid_backend`` names the one that cleans report text.

Every backend returns the same typed placeholders (``[NAME]``, ``[DATE]``, ``[ID]``, ...; ``deid.PLACEHOLDERS``), so
nothing downstream (sections, sentences, tokenizer, cache) depends on the choice. Built in:

- ``rules``: medclip's rule set (``deid.py``), the offline default: no model, auditable, measured in docs/deid.md;
- ``presidio``: Microsoft Presidio's recognizers plus a local spaCy model (``deid_presidio.py``; extra
  ``medclip[presidio]``, ``report.presidio_model``);
- ``rules+presidio``: both; the rules' findings first, Presidio's add what is left, so recall never drops below the
  rules'.

A backend is a factory ``ReportConfig -> TextDeidentifier``. A third-party package adds one with
``register_report_deid_backend("name", factory)`` or the ``medclip.deid_backends`` entry-point group. Backends are built
once per configuration and process (``build_deidentifier``): a spaCy model takes seconds to load.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from medclip.config import ConfigError
from medclip.registry import Registry

from .deid import MASK_CHARACTER, Deidentifier, PhiSpan, masked_text, unmasked_pieces

if TYPE_CHECKING:
    from .config import ReportConfig

DEFAULT_DEID_BACKEND = "rules"


class TextDeidentifier(Protocol):
    """What a backend builds: ``find`` (identifier spans, sorted, non-overlapping) and ``__call__`` (placeholders in).

    ``identity`` (optional) names what besides the configuration decides the output (a model and its version); a
    checkpoint records it so evaluation de-identifies the same way.
    """

    def find(self, text: str) -> list[PhiSpan]: ...

    def __call__(self, text: str) -> str: ...


DeidBackendFactory = Callable[["ReportConfig"], TextDeidentifier]
REPORT_DEID_BACKENDS: Registry[DeidBackendFactory] = Registry("de-identification backend", "medclip.deid_backends")


def register_report_deid_backend(name: str, factory: DeidBackendFactory | None = None, *, overwrite: bool = False):
    """Register a backend factory (``cfg -> TextDeidentifier``) under ``name``; usable as a decorator."""
    return REPORT_DEID_BACKENDS.register(name, factory, overwrite=overwrite)


def list_report_deid_backends(pattern: str | None = None) -> list[str]:
    """Registered backend names, sorted; with ``pattern`` only those matching it (``"*presidio"``)."""
    return REPORT_DEID_BACKENDS.names(pattern)


class CombinedDeidentifier:
    """Runs several deidentifiers in order; each later one keeps only what the earlier ones left unclaimed.

    With the rules first, every span the rules find is in the result with the rules' type, so recall is never lower
    than the rules' own (precision and clinical preservation can be, by what the later ones add).
    """

    def __init__(self, parts: Sequence[TextDeidentifier]) -> None:
        self.parts = tuple(parts)
        identities = [getattr(part, "identity", None) for part in self.parts]
        self.identity = "+".join(identity for identity in identities if identity) or None

    def find(self, text: str) -> list[PhiSpan]:
        masked = text.replace(MASK_CHARACTER, "\ufffd")
        found: list[PhiSpan] = []
        for part in self.parts:
            for span in part.find(text):
                pieces = unmasked_pieces(masked, span.start, span.end)
                found.extend(PhiSpan(start, end, span.kind, span.rule) for start, end in pieces)
                if pieces:
                    masked = masked_text(masked, pieces)
        return sorted(found, key=lambda span: span.start)

    def __call__(self, text: str) -> str:
        return Deidentifier.replace(text, self.find(text))


def _rules(cfg: ReportConfig) -> TextDeidentifier:
    return Deidentifier(ages_over_89=cfg.deidentify_ages_over_89)


def _presidio(cfg: ReportConfig) -> TextDeidentifier:
    from .deid_presidio import PresidioDeidentifier

    return PresidioDeidentifier(cfg.presidio_model, cfg.presidio_score_threshold)


def _rules_and_presidio(cfg: ReportConfig) -> TextDeidentifier:
    return CombinedDeidentifier([_rules(cfg), _presidio(cfg)])


register_report_deid_backend("rules", _rules)
register_report_deid_backend("presidio", _presidio)
register_report_deid_backend("rules+presidio", _rules_and_presidio)

_BUILT: dict[str, TextDeidentifier] = {}
_BUILD_LOCK = threading.Lock()


def build_deidentifier(cfg: ReportConfig) -> TextDeidentifier:
    """The backend ``cfg.deid_backend`` names, built for ``cfg`` once per process (later calls reuse it).

    Raises:
        RegistryError: an unknown backend name (listing the registered ones).
        ConfigError: the backend cannot be built (Presidio not installed, no spaCy model; the message says how).
    """
    key = json.dumps(asdict(cfg), sort_keys=True, default=str)
    built = _BUILT.get(key)
    if built is None:
        with _BUILD_LOCK:
            built = _BUILT.get(key)
            if built is None:
                built = REPORT_DEID_BACKENDS.get(cfg.deid_backend)(cfg)
                _BUILT[key] = built
    return built


def deidentification_state(cfg: ReportConfig) -> dict[str, Any]:
    """What a checkpoint records about de-identification: the backend, the age switch and the model identity."""
    if not cfg.deidentify:
        return {"backend": None}
    return {
        "backend": cfg.deid_backend,
        "ages_over_89": cfg.deidentify_ages_over_89,
        "identity": getattr(build_deidentifier(cfg), "identity", None),
    }


def check_deidentification_state(saved: dict[str, Any] | None, cfg: ReportConfig) -> None:
    """Refuse to evaluate with a de-identification other than training's (another backend, switch or model).

    Checkpoints written before backends existed record nothing (``saved`` None): they used the rules.

    Raises:
        ConfigError: the saved and the current de-identification differ; the message names both.
    """
    if saved is None:
        return
    current = deidentification_state(cfg)
    if saved != current:
        raise ConfigError(
            f"report de-identification differs from the checkpoint's: it was trained with {json.dumps(saved)}, "
            f"this configuration gives {json.dumps(current)}. Evaluation must de-identify reports as training did "
            "(same report.deid_backend, and for Presidio the same spaCy model and version in report.presidio_model)"
        )
