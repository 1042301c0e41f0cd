"""De-identification backends (``modalities/report/deid_backends.py``): the registry, the rules default, the optional
Presidio backend (missing package or model -> a clear error; with a blank spaCy model its pattern recognizers give
medclip's placeholders), the record in the preprocess state, and linear time of ``rules+presidio``.

The Presidio tests run Presidio for real with a blank spaCy pipeline written to ``tmp_path`` (no NER model: spaCy
models are not on PyPI); they are skipped where ``presidio_analyzer`` is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import time

import pytest

from medclip.config import ConfigError
from medclip.registry import RegistryError
from modalities.report import ReportConfig, ReportModality, deidentify
from modalities.report.deid import Deidentifier, PhiSpan
from modalities.report.deid_backends import (
    REPORT_DEID_BACKENDS,
    CombinedDeidentifier,
    build_deidentifier,
    list_report_deid_backends,
    register_report_deid_backend,
)

HAS_PRESIDIO = importlib.util.find_spec("presidio_analyzer") is not None
needs_presidio = pytest.mark.skipif(not HAS_PRESIDIO, reason="presidio-analyzer not installed (medclip[presidio])")
SMALL = {"width": 32, "layers": 1, "heads": 2, "dropout": 0.0, "max_tokens": 64, "vocab_size": 300}
CONTACT = "FINDINGS: Lungs clear. Results sent to jane.roe@example.org and (617) 555-0143 on 01/02/2023, 3.5 cm."


def blank_spacy_model(folder, name: str = "pipeline"):
    """A blank English spaCy pipeline on disk (tokenizer only, no NER): what Presidio's pattern recognizers need."""
    import spacy

    nlp = spacy.blank("en")
    nlp.meta["name"] = name
    nlp.to_disk(folder)
    return folder


@pytest.fixture(scope="module")
def shared_blank_model(tmp_path_factory) -> str:
    """One blank model for the module's parametrised tests: the backend is then built once (``build_deidentifier``)."""
    return str(blank_spacy_model(tmp_path_factory.mktemp("blank") / "blank_en"))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: backends must never download anything."""

    def refuse(*args, **kwargs):
        raise AssertionError("a de-identification backend tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- registry and the rules default ----------------------------------------------------------------------------------
def test_registry_lists_the_built_in_backends():
    assert {"rules", "presidio", "rules+presidio"} <= set(list_report_deid_backends())
    assert list_report_deid_backends("*presidio") == ["presidio", "rules+presidio"]
    with pytest.raises(RegistryError, match="unknown de-identification backend 'presido'.*did you mean 'presidio'"):
        ReportModality(ReportConfig(**SMALL, deid_backend="presido"))


def test_rules_stay_the_default_and_are_built_once():
    cfg = ReportConfig(**SMALL)
    assert cfg.deid_backend == "rules"
    built = build_deidentifier(cfg)
    assert isinstance(built, Deidentifier) and build_deidentifier(ReportConfig(**SMALL)) is built
    text = "FINDINGS: Dictated by: Jane Roe, MD on 01/02/2023. MRN: 00482913. Parkinson disease, 3.5 cm."
    assert ReportModality(cfg).load(text)["report"] == deidentify(text)
    assert ReportModality(ReportConfig(**SMALL, deidentify_ages_over_89=False)).load("Age: 93. Clear.")["report"] == (
        "Age: 93. Clear."
    )


def test_deidentify_false_is_off_whatever_the_backend():
    plugin = ReportModality(ReportConfig(**SMALL, deidentify=False, deid_backend="presidio"))  # no model needed
    assert plugin.load(CONTACT)["report"] == CONTACT


def test_a_registered_backend_is_used_by_the_load_path():
    class SecretWords:
        """Finds the word "Zorblax" as a name (a stand-in for an institution's own tagger)."""

        def find(self, text):
            start = text.find("Zorblax")
            return [] if start < 0 else [PhiSpan(start, start + 7, "NAME", "secret_words")]

        def __call__(self, text):
            return Deidentifier.replace(text, self.find(text))

    register_report_deid_backend("test_secret_words", lambda cfg: SecretWords())
    try:
        plugin = ReportModality(ReportConfig(**SMALL, deid_backend="test_secret_words"))
        assert plugin.load("FINDINGS: Zorblax has a 3 mm nodule.")["report"] == "FINDINGS: [NAME] has a 3 mm nodule."
        # rules first, then the custom backend: everything the rules find stays, with the rules' type
        combined = CombinedDeidentifier([Deidentifier(), SecretWords()])
        assert combined("Dr. Jane Roe saw Zorblax on 01/02/2023.") == "Dr. [NAME] saw [NAME] on [DATE]."
    finally:
        REPORT_DEID_BACKENDS._items.pop("test_secret_words")


# --- Presidio: clear errors -------------------------------------------------------------------------------------------
def test_presidio_without_the_package_says_which_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "presidio_analyzer", None)  # import presidio_analyzer -> ImportError
    for backend in ("presidio", "rules+presidio"):
        cfg = ReportConfig(**SMALL, deid_backend=backend, presidio_model=str(tmp_path / "no-package"))
        with pytest.raises(ConfigError, match=r"presidio-analyzer: pip install 'medclip\[presidio\]'"):
            ReportModality(cfg)


@needs_presidio
@pytest.mark.slow  # importing Presidio + spaCy and building an analyzer: 5-50 s on a loaded machine
@pytest.mark.parametrize("model", ["", "missing_model_dir", "en_core_web_not_installed"])
def test_presidio_without_a_model_says_how_to_get_one_and_downloads_nothing(model, tmp_path, no_network):
    path = str(tmp_path / model) if model == "missing_model_dir" else model
    cfg = ReportConfig(**SMALL, deid_backend="presidio", presidio_model=path)
    with pytest.raises(ConfigError, match="never downloads models.*spacy download en_core_web_lg.*to_disk"):
        ReportModality(cfg)
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(ConfigError, match="could not be loaded as a spaCy model"):
        build_deidentifier(ReportConfig(**SMALL, deid_backend="presidio", presidio_model=str(tmp_path / "not_a_model")))


# --- Presidio with a blank spaCy model ---------------------------------------------------------------------------
@needs_presidio
@pytest.mark.slow  # importing Presidio + spaCy and building an analyzer: 5-50 s on a loaded machine
def test_presidio_pattern_recognizers_give_medclip_placeholders_in_the_load_path(tmp_path, no_network):
    model = str(blank_spacy_model(tmp_path / "blank_en"))
    plugin = ReportModality(ReportConfig(**SMALL, deid_backend="presidio", presidio_model=model))
    text = plugin.load(CONTACT)["report"]
    assert text == "FINDINGS: Lungs clear. Results sent to [EMAIL] and [PHONE] on [DATE], 3.5 cm."
    # without an NER model Presidio finds no names; the combined backend keeps the rules' recall
    signed = "FINDINGS: Clear. Dictated by: Jane Roe, MD. Call (617) 555-0143."
    assert "Jane Roe" in build_deidentifier(plugin.config)(signed)
    combined = ReportConfig(**SMALL, deid_backend="rules+presidio", presidio_model=model)
    assert ReportModality(combined).load(signed)["report"] == "FINDINGS: Clear. Dictated by: [NAME], MD. Call [PHONE]."
    # the transform applies the same backend again (idempotent) to text that never went through load
    plugin.fit([plugin.load(CONTACT), *plugin.synthetic(20, seed=1)])
    assert plugin.transforms(train=False)({"report": CONTACT})["report"]["input_ids"].tolist() == (
        plugin.transforms(train=False)({"report": text})["report"]["input_ids"].tolist()
    )


@needs_presidio
@pytest.mark.slow  # importing Presidio + spaCy and building an analyzer: 5-50 s on a loaded machine
def test_presidio_choice_round_trips_through_the_preprocess_state(tmp_path):
    model = str(blank_spacy_model(tmp_path / "blank_en"))
    plugin = ReportModality(ReportConfig(**SMALL, deid_backend="rules+presidio", presidio_model=model))
    plugin.fit(plugin.synthetic(20, seed=0))
    state = json.loads(json.dumps(plugin.preprocess_state()))
    assert state["deidentification"] == {
        "backend": "rules+presidio",
        "ages_over_89": True,
        "identity": "en_pipeline-0.0.0+no-ner",
    }
    restored = ReportModality(ReportConfig(**state["config"]))  # as a checkpoint rebuilds it: config, then state
    restored.load_preprocess_state(state)
    assert restored.load(CONTACT)["report"] == plugin.load(CONTACT)["report"]
    # the same model at another path is the same de-identification; another model is refused
    moved = str(blank_spacy_model(tmp_path / "moved"))
    ReportModality(ReportConfig(**{**state["config"], "presidio_model": moved})).load_preprocess_state(state)
    other = str(blank_spacy_model(tmp_path / "other", name="other_model"))
    with pytest.raises(ConfigError, match="de-identification differs from the checkpoint's.*other_model"):
        ReportModality(ReportConfig(**{**state["config"], "presidio_model": other})).load_preprocess_state(state)


def test_rules_choice_round_trips_and_a_different_choice_is_refused():
    plugin = ReportModality(ReportConfig(**SMALL))
    plugin.fit(plugin.synthetic(6, seed=0))
    state = json.loads(json.dumps(plugin.preprocess_state()))
    assert state["deidentification"] == {"backend": "rules", "ages_over_89": True, "identity": None}
    ReportModality(ReportConfig(**state["config"])).load_preprocess_state(state)
    with pytest.raises(ConfigError, match='trained with .*"rules".* gives .*"backend": null'):
        ReportModality(ReportConfig(**{**state["config"], "deidentify": False})).load_preprocess_state(state)
    older = {key: value for key, value in state.items() if key != "deidentification"}  # written before backends
    ReportModality(ReportConfig(**state["config"])).load_preprocess_state(older)


# --- linear time ---------------------------------------------------------------------------------------------------
# Presidio's own recognizers are slower than the rules: the phone-number matcher takes ~0.3 ms of CPU per character of
# "7/7/7/..." (linear; 60 s for a report of report.max_chars). Its URL recognizer took quadratic time (3 s for 2,000
# characters of "a.a.a.", over 40 s for 25,000) and is left out (deid_presidio.QUADRATIC_RECOGNIZERS).
ADVERSARIAL_UNITS = ["a.", "7/", "7 ", "7-", "a@", "www.", "x@y.", "(617) 555-014", "01/02/202", "Dr. ", "A "]
SMALL_TEXT, LARGE_TEXT = 5_000, 20_000  # the quadratic URL recognizer took 3 s at 2,000 characters
MAX_GROWTH = 6.0  # for 4x the text: linear gives ~4x, quadratic 16x (timer noise on a loaded machine reaches ~1.4x)
CPU_SECONDS_PER_100K = 60.0
MEASURABLE_SECONDS = 0.5  # below this, process_time noise (10-20 ms) dominates the ratio


@needs_presidio
@pytest.mark.slow
@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS)
def test_rules_plus_presidio_takes_linear_time_on_adversarial_text(unit, shared_blank_model):
    from tests.modalities.report.test_deid_linear_time import repeated

    combined = build_deidentifier(ReportConfig(deid_backend="rules+presidio", presidio_model=shared_blank_model))
    combined.find("warm up on 01/02/2023, (617) 555-0143")

    def seconds(size: int) -> float:
        text = repeated(unit, size)
        best = float("inf")
        for _ in range(2):  # the best of two: noise only ever adds time
            began = time.process_time()
            combined.find(text)
            best = min(best, time.process_time() - began)
        return best

    small, large = seconds(SMALL_TEXT), seconds(LARGE_TEXT)
    assert large < CPU_SECONDS_PER_100K * LARGE_TEXT / 100_000
    if large > MEASURABLE_SECONDS:
        assert large / max(small, MEASURABLE_SECONDS / 4) < MAX_GROWTH


@needs_presidio
@pytest.mark.slow
def test_presidio_backend_leaves_out_the_quadratic_url_recognizer(tmp_path):
    from modalities.report.deid_presidio import QUADRATIC_RECOGNIZERS, PresidioDeidentifier

    presidio = PresidioDeidentifier(str(blank_spacy_model(tmp_path / "blank_en")))
    names = {recognizer.name for recognizer in presidio.analyzer.registry.get_recognizers("en", all_fields=True)}
    assert QUADRATIC_RECOGNIZERS and not names & set(QUADRATIC_RECOGNIZERS)
    began = time.process_time()
    assert presidio.find("a." * 5_000) == []
    assert time.process_time() - began < 5.0  # with the URL recognizer: tens of seconds


@needs_presidio
@pytest.mark.slow  # importing Presidio + spaCy and building an analyzer: 5-50 s on a loaded machine
def test_a_saved_checkpoint_evaluates_with_the_backend_it_was_trained_with(tmp_path):
    from dataclasses import asdict

    import yaml

    from medclip.checkpoint import CONFIG_FILE, ModelCard, load_model, save_model
    from medclip.factory import ModelConfig, build_model

    cfg = ReportConfig(**SMALL, deid_backend="rules+presidio", presidio_model=str(blank_spacy_model(tmp_path / "m")))
    plugin = ReportModality(cfg)
    plugin.fit(plugin.synthetic(6, seed=0))
    model = build_model(ModelConfig(embed_dim=16), {"report": plugin})
    card = ModelCard(modalities={"report": asdict(cfg)}, model=ModelConfig(embed_dim=16))
    checkpoint = save_model(tmp_path / "checkpoint", model, {"report": plugin}, card)
    loaded = load_model(checkpoint)
    assert loaded.preprocess["report"].load(CONTACT)["report"] == plugin.load(CONTACT)["report"]
    assert "[EMAIL]" in loaded.preprocess["report"].load(CONTACT)["report"]
    # evaluating with another spaCy model than training's is refused, naming both
    other = blank_spacy_model(tmp_path / "other", name="other_model")
    card_file = checkpoint / CONFIG_FILE
    data = yaml.safe_load(card_file.read_text())
    data["modalities"]["report"]["presidio_model"] = str(other)
    card_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="en_pipeline-0.0.0.*en_other_model-0.0.0"):
        load_model(checkpoint)
