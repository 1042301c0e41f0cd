"""Tests of the report modality: sections, sentences, reading, tokenizer state, collate, both encoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import medclip
from medclip.model import ContrastiveModel, ProjectionHead
from medclip.registry import RegistryError
from medclip.types import ModalityError
from modalities.report import (
    OfflineModelError,
    ReportConfig,
    ReportModality,
    extract_sections,
    generate_reports,
    split_sentences,
)

SMALL = {"width": 32, "layers": 1, "heads": 2, "dropout": 0.0, "max_tokens": 64, "vocab_size": 300}

MIMIC_STYLE = """EXAMINATION:  CHEST (PA AND LAT)\r
INDICATION: Cough.\r
TECHNIQUE: Chest PA and lateral.\r
COMPARISON: None.\r
\r
FINDINGS: \r
\r
A 3.5 cm mass in the right upper lobe,\r
vs. 2.9 cm on the prior study.  No pleural effusion.\r
\r
IMPRESSION: \r
\r
1. Enlarging right upper lobe mass.\r
2. No effusion.\r
"""


def small_modality(**overrides) -> ReportModality:
    return medclip.get_modality("report", {**SMALL, **overrides})


def reconfigured(fitted: ReportModality, config: ReportConfig) -> ReportModality:
    """A plugin with other options but the same fitted tokenizer (as a checkpoint restores it)."""
    plugin = ReportModality(config)
    plugin.load_preprocess_state(fitted.preprocess_state())
    return plugin


@pytest.fixture(scope="module")
def fitted() -> ReportModality:
    modality = small_modality()
    modality.fit(modality.synthetic(60, seed=0))
    return modality


# --- sections --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected_text", "expected_found"),
    [
        (
            "HISTORY: Cough.\nFindings:\nLungs clear.\n\nImpression:\nNormal chest.",
            "Lungs clear.\n\nNormal chest.",
            ["history", "findings", "impression"],
        ),
        ("FINDINGS\nNo effusion.\nCONCLUSION:\nNo acute process.", "No effusion.\n\nNo acute process.", None),
        ("**Findings:** Small nodule.\n## Impression\nNodule.", "Small nodule.\n\nNodule.", None),
        ("EXAM: CT. FINDINGS: Lungs clear. IMPRESSION: Normal.", "Lungs clear.\n\nNormal.", None),
        ("final impression: Stable.\nTECHNIQUE: Axial.", "Stable.", ["impression", "technique"]),
        ("Findings are consistent with pneumonia.", "Findings are consistent with pneumonia.", []),
        ("Impressions: A.\nFINDINGS: B.\nFindings: C.", "B.\nC.\n\nA.", ["impression", "findings"]),
    ],
)
def test_extract_sections(text, expected_text, expected_found):
    sections = extract_sections(text)
    assert sections.text == expected_text
    if expected_found is not None:
        assert sections.found == expected_found
    assert sections.used_whole_text == (expected_found == [])


def test_extract_sections_real_looking_report_and_choice_of_sections():
    from modalities.report.cleaning import clean_report_text

    text = clean_report_text(MIMIC_STYLE)
    sections = extract_sections(text)
    assert sections.found == ["examination", "history", "technique", "comparison", "findings", "impression"]
    assert sections.text.startswith("A 3.5 cm mass") and sections.text.endswith("2. No effusion.")
    assert "Cough" not in sections.text and "EXAMINATION" not in sections.text
    only_impression = extract_sections(text, ["impression"])
    assert only_impression.text == "1. Enlarging right upper lobe mass.\n2. No effusion."
    # none of the kept sections present: the whole text is used
    whole = extract_sections("TECHNIQUE: Axial.\nSmall nodule.", ["findings"])
    assert whole.used_whole_text and whole.text == "TECHNIQUE: Axial.\nSmall nodule."


# --- sentences -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "A 3.5 cm mass, vs. 2.1 cm before. Dr. Smith was called. Seen e.g. on CT. Effusion? No.",
            ["A 3.5 cm mass, vs. 2.1 cm before.", "Dr. Smith was called.", "Seen e.g. on CT.", "Effusion?", "No."],
        ),
        (
            "1. Nodule of 0.4 cm.\n2. No effusion.\n- Mild cardiomegaly",
            ["Nodule of 0.4 cm.", "No effusion.", "Mild cardiomegaly"],
        ),
        ("The lungs are\nclear bilaterally. Approx. 3 mm nodule, etc. and more.", None),
        ("Lungs clear\nNo effusion", ["Lungs clear", "No effusion"]),
        (
            "the heart is normal. no effusion. see No. 3 image.",
            ["the heart is normal.", "no effusion.", "see No. 3 image."],
        ),
        ("1. 1.2 cm nodule. Follow-up in 6 months.", ["1.2 cm nodule.", "Follow-up in 6 months."]),
        ("Clear.\n\n---\n\n(i.e. normal) Done.", ["Clear.", "(i.e. normal) Done."]),
    ],
)
def test_split_sentences(text, expected):
    if expected is None:
        expected = ["The lungs are clear bilaterally.", "Approx. 3 mm nodule, etc. and more."]
    assert split_sentences(text) == expected


# --- resolve / load --------------------------------------------------------------------------------------------------
def test_resolve_and_load_inline_and_file(tmp_path):
    modality = ReportModality()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r1.txt").write_text(MIMIC_STYLE, encoding="utf-8")
    (tmp_path / "notes.md").write_bytes("\ufeffFindings: Lungs clear.".encode())

    inline = "FINDINGS: The lungs are clear. IMPRESSION: Normal."
    assert modality.resolve(inline, tmp_path) == inline
    resolved = modality.resolve("reports/r1.txt", tmp_path)
    assert resolved == tmp_path / "reports" / "r1.txt"
    assert modality.resolve(str(tmp_path / "notes.md"), "/elsewhere") == tmp_path / "notes.md"
    # a sentence mentioning a file name stays text
    assert modality.resolve("See attached r1.txt", tmp_path) == "See attached r1.txt"

    from_file = modality.load(resolved)
    assert from_file["report_meta"] == {
        "source": "file",
        "n_chars": len(from_file["report"]),
        "n_sentences": 4,
        "sections_found": ["examination", "history", "technique", "comparison", "findings", "impression"],
    }
    assert "\r" not in from_file["report"] and "  " not in from_file["report"]
    assert "r1" not in json.dumps(from_file["report_meta"])  # no file name in metadata
    assert modality.load(str(resolved))["report"] == from_file["report"]
    assert modality.load({"path": str(resolved)})["report"] == from_file["report"]
    md = modality.load(tmp_path / "notes.md")
    assert md["report"] == "Findings: Lungs clear." and md["report_meta"]["n_sentences"] == 1

    from_text = modality.load(inline)
    assert from_text["report_meta"]["source"] == "inline"
    assert from_text["report_meta"]["sections_found"] == ["findings", "impression"]
    assert modality.load({"text": inline})["report"] == from_text["report"]
    prompt_text = "a chest CT showing a left pleural effusion"
    prompt = modality.load(f"  {prompt_text}\n")
    assert prompt["report"] == prompt_text
    assert prompt["report_meta"] == {
        "source": "inline",
        "n_chars": len(prompt_text),
        "n_sentences": 1,
        "sections_found": [],
    }


def test_load_errors_have_reason_codes_and_leak_nothing(tmp_path):
    modality = ReportModality()
    identifier = "MRN0012345_DOE_JOHN"
    missing = tmp_path / f"{identifier}.txt"
    cases = [
        (modality.resolve(f"{identifier}.txt", tmp_path), "missing_file"),
        (str(missing), "missing_file"),
        ({"path": missing}, "missing_file"),
        ("   \n\t ", "empty_report"),
        (f"HISTORY: {identifier} 1960-01-02\nFINDINGS:\n\nIMPRESSION:\n", "empty_report"),
        ({"text": f"FINDINGS: {identifier}", "path": "x.txt"}, "invalid_reference"),
        ({"text": 3.0}, "invalid_reference"),
        (float("nan"), "invalid_reference"),
    ]
    bad_utf8 = tmp_path / f"{identifier}_latin1.txt"
    bad_utf8.write_bytes(f"FINDINGS: {identifier} caf\xe9".encode("latin-1"))
    binary = tmp_path / f"{identifier}_binary.txt"
    binary.write_bytes(f"FINDINGS: {identifier}\x00\x01".encode())
    folder = tmp_path / f"{identifier}_dir.txt"
    folder.mkdir()
    cases += [(bad_utf8, "not_utf8"), (binary, "binary_file"), (folder, "not_regular_file")]
    for ref, reason in cases:
        with pytest.raises(ModalityError) as caught:
            modality.load(ref)
        assert caught.value.reason == reason, ref
        message = str(caught.value)
        assert message.startswith(f"[{reason}]")
        assert identifier not in message and str(tmp_path) not in message and "1960" not in message


# --- tokenizer state -------------------------------------------------------------------------------------------------
def test_transforms_before_fit_is_a_clear_error():
    modality = small_modality()
    with pytest.raises(RuntimeError, match="must be fitted"):
        modality.transforms(train=True)
    with pytest.raises(RuntimeError, match="must be fitted"):
        modality.preprocess_state()


def test_fit_state_json_round_trip_tokenizes_identically(fitted):
    samples = fitted.synthetic(8, seed=123) + [fitted.load("An unseen word: pneumomediastinum, 7.25 mm.")]
    state = json.loads(json.dumps(fitted.preprocess_state()))
    assert state["tokenizer"]["kind"] == "bpe" and state["config"]["width"] == SMALL["width"]
    fresh = ReportModality(ReportConfig(**state["config"]))  # as a checkpoint rebuilds it: config, then state
    fresh.load_preprocess_state(state)
    before = fitted.transforms(train=False)
    after = fresh.transforms(train=False)
    for sample in samples:
        expected, actual = before(sample)["report"], after(sample)["report"]
        assert torch.equal(expected["input_ids"], actual["input_ids"])
        assert torch.equal(expected["sentence_ids"], actual["sentence_ids"])
    # fitting is deterministic, and the vocabulary respects vocab_size
    again = small_modality()
    again.fit(again.synthetic(60, seed=0))
    assert again.preprocess_state() == fitted.preprocess_state()
    assert 50 < fitted._tokenizer.vocab_size <= SMALL["vocab_size"]


def test_transform_structure_truncation_and_pass_through(fitted):
    sample = fitted.load(MIMIC_STYLE)
    out = fitted.transforms(train=False)(sample)
    ids, sentence_ids = out["report"]["input_ids"], out["report"]["sentence_ids"]
    assert ids.dtype == torch.long and ids.shape == sentence_ids.shape
    assert sentence_ids[0] == -1 and sentence_ids[-1] == -1  # [CLS] ... [SEP]
    assert ids[0] == fitted._tokenizer.cls_id and ids[-1] == fitted._tokenizer.sep_id
    assert sentence_ids[1:-1].unique().tolist() == [0, 1, 2, 3]  # the 4 sentences of findings + impression
    assert out["report_meta"] is sample["report_meta"] and isinstance(sample["report"], str)  # input not mutated

    tight = ReportConfig(**{**SMALL, "max_tokens": 8, "max_sentences": 1})
    short = reconfigured(fitted, tight).transforms(train=False)(sample)["report"]
    assert len(short["input_ids"]) == 8 and short["input_ids"][-1] == fitted._tokenizer.sep_id
    assert short["sentence_ids"][1:-1].tolist() == [0] * 6

    no_report = {"patient_id": "p1", "labels": torch.zeros(2)}
    assert fitted.transforms(train=True)(no_report) is no_report


def test_sentence_shuffling_keeps_the_tokens(fitted):
    shuffling = ReportConfig(**{**SMALL, "shuffle_sentences": True})
    sample = fitted.load(MIMIC_STYLE)
    shuffler = reconfigured(fitted, shuffling)
    plain = shuffler.transforms(train=False)(sample)["report"]["input_ids"]
    torch.manual_seed(0)
    orders = {tuple(shuffler.transforms(train=True)(sample)["report"]["input_ids"].tolist()) for _ in range(8)}
    assert len(orders) > 1
    assert all(sorted(order) == sorted(plain.tolist()) for order in orders)


# --- collate ---------------------------------------------------------------------------------------------------------
def test_collate_pads_and_masks_missing_rows(fitted):
    transform = fitted.transforms(train=False)
    samples = [transform(s) for s in fitted.synthetic(2, seed=5)] + [{"patient_id": "p3"}]
    samples.insert(1, transform(fitted.load("Normal chest.")))
    batch = fitted.collate(samples)
    report = batch["report"]
    lengths = [len(s["report"]["input_ids"]) if "report" in s else 0 for s in samples]
    assert report["input_ids"].shape == report["sentence_ids"].shape == (4, max(lengths))
    assert report["attention_mask"].dtype == torch.bool
    assert batch["report_mask"].tolist() == [True, True, True, False]
    assert report["attention_mask"].sum(1).tolist() == lengths
    assert (report["input_ids"][~report["attention_mask"]] == fitted._tokenizer.pad_id).all()
    assert (report["sentence_ids"][~report["attention_mask"]] == -1).all()
    assert torch.equal(report["input_ids"][1, : lengths[1]], samples[1]["report"]["input_ids"])
    with pytest.raises(TypeError, match="transforms"):
        fitted.collate([fitted.load("Normal chest.")])
    empty = fitted.collate([{}, {}])
    assert empty["report"]["input_ids"].shape == (2, 1) and not empty["report_mask"].any()


# --- encoders --------------------------------------------------------------------------------------------------------
def _batch(modality: ReportModality, texts: list[str]) -> dict:
    transform = modality.transforms(train=False)
    return modality.collate([transform(modality.load(text)) for text in texts])


def test_transformer_encoder_outputs_masks_and_gradients(fitted):
    torch.manual_seed(0)
    encoder = fitted.build_encoder()
    assert encoder.output_dim == SMALL["width"]
    texts = [MIMIC_STYLE, "Normal chest.", "FINDINGS: Small nodule. Mild emphysema. IMPRESSION: Nodule."]
    batch = _batch(fitted, texts)
    output = encoder(batch["report"])
    assert output.pooled.shape == (3, SMALL["width"])
    assert output.tokens.shape == (3, fitted.config.max_sentences, SMALL["width"])
    assert torch.isfinite(output.pooled).all() and torch.isfinite(output.tokens).all()
    assert output.token_mask.sum(1).tolist() == [4, 1, 3]
    assert (output.tokens[~output.token_mask] == 0).all()

    loss = output.pooled.pow(2).sum() + output.tokens[output.token_mask].sum()
    loss.backward()
    grads = {name: p.grad for name, p in encoder.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert (
        grads["token_embedding.weight"].abs().sum() > 0
        and grads["blocks.layers.0.self_attn.in_proj_weight"].abs().sum() > 0
    )

    # padding is invisible: a report encodes the same alone and in a padded batch
    encoder.eval()
    with torch.no_grad():
        alone = encoder(_batch(fitted, texts[1:2])["report"])
        together = encoder(batch["report"])
    torch.testing.assert_close(alone.pooled[0], together.pooled[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone.tokens[0, 0], together.tokens[1, 0], rtol=1e-4, atol=1e-5)
    # a row with no tokens at all (only reachable by direct calls) gives zeros, not NaN
    with torch.no_grad():
        blank = encoder(fitted.collate([{}])["report"])
    assert torch.equal(blank.pooled, torch.zeros(1, SMALL["width"])) and not blank.token_mask.any()


def test_report_in_contrastive_model_with_missing_row(fitted):
    encoder = fitted.build_encoder()
    model = ContrastiveModel({"report": encoder}, {"report": ProjectionHead(encoder.output_dim, 16)})
    transform = fitted.transforms(train=True)
    batch = fitted.collate([transform(s) for s in fitted.synthetic(3, seed=9)] + [{"patient_id": "x"}])
    out = model(batch)
    assert out["features"]["report"].shape == (4, 16)
    assert torch.equal(out["features"]["report"][3], torch.zeros(16))
    assert out["tokens"]["report"].shape == (4, fitted.config.max_sentences, 16)
    assert not out["token_masks"]["report"][3].any() and out["token_masks"]["report"][:3].any(1).all()


def test_registry_and_config_validation():
    assert "report" in medclip.list_modalities()
    assert isinstance(medclip.get_modality("report"), ReportModality)
    with pytest.raises(RegistryError, match="transformer"):
        small_modality(encoder="lstm")
    with pytest.raises(ValueError, match="unknown section"):
        ReportConfig(sections=["findings", "discussion"])
    with pytest.raises(ValueError, match="hf_model"):
        ReportConfig(encoder="hf")
    with pytest.raises(ValueError, match="divide"):
        ReportConfig(width=30, heads=4)


def test_synthetic_reports_are_varied_and_loadable():
    reports = generate_reports(40, seed=3)
    assert reports == generate_reports(40, seed=3)
    assert len({r.text for r in reports}) == 40
    assert {finding for r in reports for finding in r.findings} >= {"nodule", "effusion", "cardiomegaly"}
    samples = ReportModality().synthetic(5, seed=3)
    assert [s["report"] for s in samples] == [r.text for r in reports[:5]]
    assert all({"findings", "impression"} <= set(s["report_meta"]["sections_found"]) for s in samples)


# --- the "hf" encoder ------------------------------------------------------------------------------------------------
HF_WORDS = (
    "the lungs are clear no pleural effusion small nodule in right upper lobe normal chest . , 3 5 cm ##s".split()
)


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory) -> Path:
    """A tiny BERT and its WordPiece tokenizer, saved with save_pretrained like a user's local model copy."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *HF_WORDS]) + "\n")
    tokenizer = transformers.BertTokenizer(vocab=str(vocab_file))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_hf_encoder_from_local_files(tiny_hf_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    modality = medclip.get_modality("report", {"encoder": "hf", "hf_model": str(tiny_hf_model), "max_tokens": 32})
    modality.fit(modality.synthetic(3))  # records the model; nothing to learn
    state = json.loads(json.dumps(modality.preprocess_state()))
    assert state["tokenizer"] == {"kind": "hf", "hf_model": str(tiny_hf_model), "vocab_size": 5 + len(HF_WORDS)}

    texts = [
        "FINDINGS: The lungs are clear. Small nodule in right upper lobe. IMPRESSION: Normal chest.",
        "No effusion.",
    ]
    batch = _batch(modality, texts)
    ids = batch["report"]["input_ids"][0]
    assert ids[0] == 2 and ids[batch["report"]["attention_mask"][0]][-1] == 3  # [CLS] ... [SEP] of the BERT vocab
    assert (ids != 1).all()  # every word is in the tiny vocabulary: no [UNK]

    encoder = modality.build_encoder()
    assert encoder.output_dim == 24
    output = encoder(batch["report"])
    assert output.pooled.shape == (2, 24) and output.tokens.shape == (2, modality.config.max_sentences, 24)
    assert torch.isfinite(output.pooled).all() and output.token_mask.sum(1).tolist() == [3, 1]
    output.pooled.sum().backward()
    assert encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0

    fresh = ReportModality(modality.config)
    fresh.load_preprocess_state(state)
    again = _batch(fresh, texts)
    assert torch.equal(again["report"]["input_ids"], batch["report"]["input_ids"])

    too_long = ReportConfig(encoder="hf", hf_model=str(tiny_hf_model), max_tokens=128)
    with pytest.raises(ValueError, match="positions"):
        ReportModality(too_long).build_encoder()


def test_hf_missing_model_gives_offline_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in (str(tmp_path / "not_saved_here"), "some-org/some-unavailable-model"):
        config = ReportConfig(encoder="hf", hf_model=name)
        modality = ReportModality(config)
        with pytest.raises(OfflineModelError, match="never downloads") as caught:
            modality.transforms(train=False)
        assert "save_pretrained" in str(caught.value) and "hf_model" in str(caught.value)
        with pytest.raises(OfflineModelError, match="model of hf_model"):
            modality.build_encoder()
