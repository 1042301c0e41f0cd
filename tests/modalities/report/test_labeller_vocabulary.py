"""Vocabulary files: the bundled ones load, a user's own YAML works, and every bad file is refused naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from modalities.report.labeller import (
    NEGATIVE,
    POSITIVE,
    UNCERTAIN,
    ReportLabeller,
    VocabularyError,
    bundled_vocabularies,
    load_vocabulary,
)
from modalities.report.labeller.vocabulary import MAX_VOCABULARY_BYTES, TRIGGER_KINDS

CHEXPERT = [
    "no finding",
    "enlarged cardiomediastinum",
    "cardiomegaly",
    "lung opacity",
    "lung lesion",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural effusion",
    "pleural other",
    "fracture",
    "support devices",
]


def test_bundled_vocabularies_load_with_every_trigger_kind():
    assert set(bundled_vocabularies()) == {"chest_ct", "chest_xray", "ecg"}
    for name in bundled_vocabularies():
        vocabulary = load_vocabulary(name)
        assert vocabulary.name == name and vocabulary.findings
        assert set(vocabulary.triggers) == set(TRIGGER_KINDS)
        assert all(vocabulary.triggers[kind] for kind in TRIGGER_KINDS)  # the default base fills every kind
    assert load_vocabulary("chest_xray").label_names == CHEXPERT  # CheXpert's 14, "no finding" first
    assert len(load_vocabulary("chest_ct").findings) == 19
    assert load_vocabulary("chest_ct").no_finding is None


def test_bundled_chest_ct_names_match_the_bundled_zero_shot_prompts():
    """Labelled manifests feed `medclip zero-shot` with medclip/prompts/chest_ct_findings.yaml as they are."""
    from medclip.eval.prompts import resolve_prompt_set

    prompts = yaml.safe_load(resolve_prompt_set("chest_ct_findings").read_text())
    assert set(prompts["findings"]) <= set(load_vocabulary("chest_ct").label_names)


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


MINIMAL = {
    "name": "wound",
    "triggers": {"pre_negation": ["no", "without"], "pre_uncertainty": ["possible"], "termination": ["but"]},
    "findings": {
        "wound infection": {"mentions": ["infect*", "cellulitis"], "exclude": ["urinary tract infection"]},
        "dehiscence": {"mentions": ["dehiscence", "wound ~2 open|opened"], "normal": ["wound ~2 intact"]},
    },
}


def test_a_users_own_vocabulary_with_its_own_triggers(tmp_path):
    vocabulary = load_vocabulary(write(tmp_path / "wound.yaml", MINIMAL))
    assert vocabulary.label_names == ["wound infection", "dehiscence"] and vocabulary.no_finding is None
    labeller = ReportLabeller(vocabulary, sections=())
    assert labeller.states("Possible cellulitis but no dehiscence.") == {
        "wound infection": UNCERTAIN,
        "dehiscence": NEGATIVE,
    }
    assert labeller.states("Wound is intact. History of urinary tract infection.") == {
        "wound infection": "not_mentioned",
        "dehiscence": NEGATIVE,
    }
    assert labeller.states("The wound has opened; infected.")["dehiscence"] == POSITIVE


def test_a_user_vocabulary_can_extend_the_bundled_triggers_and_define_no_finding(tmp_path):
    data = {
        **MINIMAL,
        "triggers": {"base": "default", "pre_negation": ["nil"]},
        "scope": {"pre_words": 3},
        "no_finding": {"name": "clean wound", "ignore": ["dehiscence"]},
    }
    vocabulary = load_vocabulary(write(tmp_path / "wound.yml", data))
    labeller = ReportLabeller(vocabulary, sections=())
    assert vocabulary.scope.pre_words == 3 and vocabulary.label_names[0] == "clean wound"
    states = labeller.states("Nil cellulitis. Wound has opened.")
    assert states == {"clean wound": POSITIVE, "wound infection": NEGATIVE, "dehiscence": POSITIVE}
    # pre_words 3: "no" reaches a mention three words later, not four
    assert labeller.states("no sign at all of cellulitis")["wound infection"] == POSITIVE
    assert labeller.states("no sign of any cellulitis")["wound infection"] == NEGATIVE


def bad(tmp_path: Path, change) -> str:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    change(data)
    with pytest.raises(VocabularyError) as raised:
        load_vocabulary(write(tmp_path / "mine.yaml", data))
    return str(raised.value)


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda d: d.pop("findings"), "findings must be a non-empty mapping"),
        (lambda d: d.update(findings={}), "findings must be a non-empty mapping"),
        (lambda d: d.update(findings=["a"]), "findings must be a non-empty mapping"),
        (lambda d: d.pop("name"), "name must be a non-empty name"),
        (lambda d: d.update(nmae="x"), "unknown key nmae; did you mean 'name'"),
        (lambda d: d["findings"]["dehiscence"].update(mention=["x"]), "findings.dehiscence.mention; did you mean"),
        (lambda d: d["findings"]["dehiscence"].pop("mentions"), "findings.dehiscence.mentions must be a non-empty"),
        (lambda d: d["findings"]["dehiscence"].update(mentions=[]), "findings.dehiscence.mentions must be a non-empty"),
        (lambda d: d["findings"]["dehiscence"].update(mentions="open"), "findings.dehiscence.mentions must be"),
        (
            lambda d: d["findings"]["dehiscence"].update(mentions=["ok", "wound ~9 open"]),
            r"findings.dehiscence.mentions\[1\]: phrase 'wound ~9 open': a gap spans",
        ),
        (lambda d: d["findings"]["dehiscence"].update(normal=["x*"]), r"findings.dehiscence.normal\[0\]: .*prefix"),
        (lambda d: d["findings"]["dehiscence"].update(exclude=[3]), r"findings.dehiscence.exclude\[0\]: .*text"),
        (lambda d: d["findings"].update({"label:x": {"mentions": ["x"]}}), "write the finding name only"),
        (lambda d: d["findings"].update({" x": {"mentions": ["x"]}}), "no outer spaces"),
        (lambda d: d["findings"].update({"x": ["x"]}), "findings.x must be a mapping"),
        (lambda d: d["triggers"].update(pre_negations=["no"]), "triggers.pre_negations; did you mean 'pre_negation'"),
        (lambda d: d["triggers"].update(pre_negation=[False]), r"triggers.pre_negation\[0\]: .*got bool"),
        (lambda d: d["triggers"].update(base="radiology_v2"), "triggers.base 'radiology_v2' is not a bundled"),
        (lambda d: d.update(scope={"pre_words": 0}), "scope.pre_words must be a whole number"),
        (lambda d: d.update(scope={"pre_word": 3}), "scope.pre_word; did you mean 'pre_words'"),
        (lambda d: d.update(no_finding={"name": "dehiscence"}), "no_finding.name 'dehiscence' is also a finding"),
        (lambda d: d.update(no_finding={"name": "ok", "ignore": ["wounds"]}), r"no_finding.ignore\[0\] 'wounds'"),
        (lambda d: d.update(no_finding={"name": "ok", "ignore": [["dehiscence"]]}), r"no_finding.ignore\[0\]"),
        (lambda d: d.update(no_finding={"name": "ok", "ignore": "dehiscence"}), "no_finding.ignore must be a list"),
        (lambda d: d.update(description=3), "description must be text"),
    ],
)
def test_bad_vocabulary_files_name_the_key(tmp_path, change, expected):
    message = bad(tmp_path, change)
    assert message.startswith("mine.yaml: ")
    assert re.search(expected, message), message


def test_a_repeated_finding_is_an_error_not_a_silent_override(tmp_path):
    path = write(
        tmp_path / "twice.yaml",
        "name: t\nfindings:\n  effusion:\n    mentions: [effusion]\n  effusion:\n    mentions: [fluid]\n",
    )
    with pytest.raises(VocabularyError, match="twice.yaml: not valid YAML .*key 'effusion' appears more than once"):
        load_vocabulary(path)


def test_unreadable_vocabulary_files(tmp_path):
    with pytest.raises(VocabularyError, match="neither a bundled vocabulary"):
        load_vocabulary("chest_mri")
    with pytest.raises(VocabularyError, match="missing.yaml: .*does not exist"):
        load_vocabulary(tmp_path / "missing.yaml")
    with pytest.raises(VocabularyError, match="not valid YAML"):
        load_vocabulary(write(tmp_path / "broken.yaml", "name: [unclosed\n"))
    with pytest.raises(VocabularyError, match="the file must be a mapping"):
        load_vocabulary(write(tmp_path / "list.yaml", "- a\n- b\n"))
    (tmp_path / "binary.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(VocabularyError, match="not UTF-8"):
        load_vocabulary(tmp_path / "binary.yaml")
    (tmp_path / "huge.yaml").write_bytes(b"#" * (MAX_VOCABULARY_BYTES + 1))
    with pytest.raises(VocabularyError, match="too_large"):
        load_vocabulary(tmp_path / "huge.yaml")


def test_a_fifo_named_as_vocabulary_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(VocabularyError, match="not_regular_file"):
        load_vocabulary(tmp_path / "pipe.yaml")


def test_vocabulary_errors_are_config_errors_so_the_cli_reports_them():
    from medclip.config import ConfigError

    assert issubclass(VocabularyError, ConfigError)
