"""De-identification with Microsoft Presidio (``presidio-analyzer``), giving the same typed placeholders as the rules.

Presidio combines pattern recognizers (e-mail, URL, phone numbers through ``phonenumbers``, dates, SSN, credit
cards, IBAN, ...) with a spaCy named-entity model (PERSON, LOCATION, DATE). It is an optional extra
(``pip install 'medclip[presidio]'``); medclip's rules (``deid.py``) stay the offline default.

Two rules keep it as offline as the rest of medclip:

- the spaCy model is never downloaded: ``presidio_model`` names a local model directory (``nlp.to_disk``) or an
  installed model package (``en_core_web_lg``, installed from a wheel copied in). spaCy models are not on PyPI, so a
  missing model is a loud ``ConfigError`` saying how to get one, never a download attempt (Presidio's own loader
  would call ``spacy.cli.download``; we load the model ourselves and hand it over);
- ``tldextract`` (used by Presidio's e-mail recognizer) fetches the public-suffix list over HTTP on first use; its
  default extractor is switched to the snapshot bundled with the package.

Presidio's ``UrlRecognizer`` is left out: its regular expression takes quadratic time (measured: 3 s of CPU for
2,000 characters of "a.a.a.", over 40 s for 25,000; a crafted report would hold up a data-loader worker for hours)
and it also matches bare domain-like words ("jane.ro" inside an e-mail address). medclip's ``url`` rule covers URLs
in ``rules+presidio``. The other recognizers were timed on the adversarial inputs of
``tests/modalities/report/test_deid_linear_time.py``: linear, the slowest (phone numbers on "7/7/7/") ~0.3 ms per
character.

Presidio's findings are mapped onto medclip's placeholder types (``PRESIDIO_KINDS``); entities medclip keeps on
purpose (organisations, nationalities, ages up to 89) are not requested. Overlapping findings are resolved like the
rules: the highest score (then the longest) claims its characters first, later ones keep only unclaimed parts.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

from medclip.config import ConfigError

from .deid import MASK_CHARACTER, Deidentifier, PhiSpan, masked_text, unmasked_pieces

# Presidio entity -> medclip placeholder type. Not requested: ORGANIZATION and NRP (institutions and nationalities are
# kept, docs/deid.md), AGE (medclip removes only ages above 89, HIPAA Safe Harbor; the rules do that).
PRESIDIO_KINDS: dict[str, str] = {
    "PERSON": "NAME",
    "DATE_TIME": "DATE",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "LOCATION": "ADDRESS",
    **{
        entity: "ID"
        for entity in (
            "US_SSN",
            "US_ITIN",
            "US_PASSPORT",
            "US_DRIVER_LICENSE",
            "US_BANK_NUMBER",
            "UK_NHS",
            "MEDICAL_LICENSE",
            "CREDIT_CARD",
            "IBAN_CODE",
            "IP_ADDRESS",
            "MAC_ADDRESS",
            "CRYPTO",
            "UUID",
        )
    },
}

QUADRATIC_RECOGNIZERS = ("UrlRecognizer",)  # see the module docstring
HOW_TO_GET_A_MODEL = (
    "medclip never downloads models. On a machine with internet run `python -m spacy download en_core_web_lg` "
    "(or download the wheel from https://github.com/explosion/spacy-models/releases), then either pip-install that "
    "wheel here and set presidio_model: en_core_web_lg, or save it with `spacy.load('en_core_web_lg')"
    ".to_disk(DIR)`, copy DIR here and set presidio_model: DIR"
)
_OFFLINE_LOCK = threading.Lock()


def _import_presidio() -> Any:
    """``presidio_analyzer``, or a ConfigError naming the extra to install."""
    try:
        return importlib.import_module("presidio_analyzer")
    except ImportError as error:
        raise ConfigError(
            "report.deid_backend uses Presidio, which needs the optional package presidio-analyzer: "
            "pip install 'medclip[presidio]' (or choose report.deid_backend: rules, the offline default)"
        ) from error


def _keep_tldextract_offline() -> None:
    """Make ``tldextract`` (Presidio's e-mail recognizer) use its bundled public-suffix snapshot, never HTTP."""
    tldextract = importlib.import_module("tldextract.tldextract")
    with _OFFLINE_LOCK:
        tldextract.TLD_EXTRACTOR.suffix_list_urls = ()


def load_spacy_model(model: str) -> Any:
    """The spaCy pipeline ``model`` names: a local model directory or an installed model package; never downloaded.

    Raises:
        ConfigError: ``model`` is empty, or names neither a model directory nor an installed package, or cannot be
            loaded; the message says how to get a model.
    """
    import spacy

    if not model:
        raise ConfigError(f"report.deid_backend uses Presidio, which needs report.presidio_model. {HOW_TO_GET_A_MODEL}")
    folder = Path(model).expanduser()
    if not (folder.is_dir() or spacy.util.is_package(model)):
        raise ConfigError(
            f"report.presidio_model {model!r} is neither a spaCy model directory nor an installed spaCy model package "
            f"(spaCy models are not on PyPI). {HOW_TO_GET_A_MODEL}"
        )
    try:
        return spacy.load(folder if folder.is_dir() else model)
    except (OSError, ValueError, ImportError) as error:
        raise ConfigError(
            f"report.presidio_model {model!r} could not be loaded as a spaCy model ({type(error).__name__}). "
            f"{HOW_TO_GET_A_MODEL}"
        ) from None


def model_identity(nlp: Any) -> str:
    """``lang_name-version+ner`` of a spaCy pipeline (``en_core_web_lg-3.8.0+ner``, ``en_pipeline-0.0.0+no-ner``).

    What a checkpoint records, so evaluation de-identifies with the same model whatever path it is loaded from.
    """
    meta = nlp.meta
    ner = "ner" if "ner" in nlp.pipe_names else "no-ner"
    return f"{meta.get('lang', nlp.lang)}_{meta.get('name', 'pipeline')}-{meta.get('version', '0.0.0')}+{ner}"


class PresidioDeidentifier:
    """Finds identifiers with Presidio's analyzer and replaces them with medclip's typed placeholders.

    Args:
        model: local spaCy model directory or installed model package name (``report.presidio_model``).
        score_threshold: Presidio findings below this confidence are ignored. Its weakest pattern recognizers
            (bank account, driver licence: any 8-9 digit number, score 0.01-0.05) would otherwise replace clinical
            numbers.
    """

    def __init__(self, model: str, score_threshold: float = 0.4) -> None:
        analyzer_module = _import_presidio()
        _keep_tldextract_offline()
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        nlp = load_spacy_model(model)
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
        engine.nlp = {"en": nlp}  # loaded here: SpacyNlpEngine.load() would try to download a missing model
        self.analyzer = analyzer_module.AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
        for recognizer in QUADRATIC_RECOGNIZERS:
            self.analyzer.registry.remove_recognizer(recognizer)
        supported = set(self.analyzer.get_supported_entities("en"))
        self.entities = [entity for entity in PRESIDIO_KINDS if entity in supported]
        self.score_threshold = score_threshold
        self.identity = model_identity(nlp)

    def find(self, text: str) -> list[PhiSpan]:
        """Every identifier Presidio finds in ``text`` (mapped types), sorted by position, non-overlapping."""
        if not text.strip():
            return []
        results = self.analyzer.analyze(
            text, language="en", entities=self.entities, score_threshold=self.score_threshold
        )
        results = sorted(results, key=lambda result: (-result.score, result.start - result.end, result.start))
        masked = text.replace(MASK_CHARACTER, "\ufffd")
        found: list[PhiSpan] = []
        for result in results:
            pieces = unmasked_pieces(masked, result.start, result.end)
            name = (result.recognition_metadata or {}).get("recognizer_name", "presidio")
            found.extend(
                PhiSpan(start, end, PRESIDIO_KINDS[result.entity_type], f"presidio:{name}") for start, end in pieces
            )
            if pieces:
                masked = masked_text(masked, pieces)
        return sorted(found, key=lambda span: span.start)

    def __call__(self, text: str) -> str:
        """``text`` with every identifier replaced by its placeholder."""
        return Deidentifier.replace(text, self.find(text))
