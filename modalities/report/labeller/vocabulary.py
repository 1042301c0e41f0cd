"""Finding vocabularies: which findings to label, the phrases that mention them, and the trigger lists (YAML files).

A vocabulary file (format in docs/labeller.md; bundled ones in ``vocabularies/``)::

    name: chest_xray
    description: the 14 CheXpert observations
    triggers:
      base: default                   # start from a bundled trigger set (vocabularies/triggers/default.yaml)
      pre_uncertainty: [minimal voltage criteria for]     # added to the base lists
    scope: {pre_words: 8, post_words: 6}
    no_finding: {name: no finding, ignore: [support devices]}
    findings:
      pleural effusion:
        mentions: [pleural effusion*, effusion*, pleural fluid]
        normal: [costophrenic angles ~2 sharp]            # phrases that say the finding is absent
        exclude: [pericardial effusion*]                  # a mention inside one of these is not one

Every phrase is compiled with ``phrases.parse_phrase`` (no regular expressions). Any problem is a ``VocabularyError``
naming the file and the key ("findings.pleural effusion.mentions[2]: ..."), raised when the file is loaded, before
any report is read.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medclip.config import ConfigError
from medclip.data.safe_io import read_limited
from medclip.types import ModalityError

from .phrases import Phrase, PhraseError, parse_phrase

VOCABULARY_DIR = Path(__file__).resolve().parent / "vocabularies"
TRIGGER_DIR = VOCABULARY_DIR / "triggers"
MAX_VOCABULARY_BYTES = 1024 * 1024  # a vocabulary is a few kilobytes; anything near this is not one
MAX_NAME_CHARS = 100  # a finding name becomes a column name ("label:<name>")

# Trigger kinds, after NegEx / ConText and the CheXpert labeller:
PRE_NEGATION = "pre_negation"  # before the mention: "no", "without", "negative for"
POST_NEGATION = "post_negation"  # after it: "is absent", "has resolved", ": none"
PRE_UNCERTAINTY = "pre_uncertainty"  # "possible", "cannot exclude", "concerning for"
POST_UNCERTAINTY = "post_uncertainty"  # "is not excluded", "is suspected", "?"
PSEUDO = "pseudo"  # look like a negation but are none: "no change in", "not only" (they end an earlier trigger's reach)
TERMINATION = "termination"  # end a trigger's reach: "but", "however", ";"
TRIGGER_KINDS = (PRE_NEGATION, POST_NEGATION, PRE_UNCERTAINTY, POST_UNCERTAINTY, PSEUDO, TERMINATION)

_TOP_KEYS = ("name", "description", "triggers", "scope", "no_finding", "findings")
_FINDING_KEYS = ("mentions", "normal", "exclude")
_SCOPE_KEYS = ("pre_words", "post_words")
_NO_FINDING_KEYS = ("name", "ignore")
_MAX_SCOPE_WORDS = 50


class VocabularyError(ConfigError):
    """A vocabulary file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Finding:
    """One finding: the phrases that mention it, that state it is absent (``normal``), and that are not about it."""

    name: str
    mentions: tuple[Phrase, ...]
    normal: tuple[Phrase, ...] = ()
    exclude: tuple[Phrase, ...] = ()


@dataclass(frozen=True)
class Scope:
    """How far a trigger reaches: how many words may lie between it and a mention (punctuation marks do not count).

    Attributes:
        pre_words: words allowed between a pre-trigger ("no", "possible") and the mention after it: 8 reaches the last
            item of "no focal consolidation, pleural effusion, or pneumothorax" (5 words between).
        post_words: words allowed between a mention and a post-trigger ("is absent", "is suspected") after it;
            post-triggers also stop at a comma, so "consolidation at the base, effusion is absent" negates the
            effusion only.
    """

    pre_words: int = 8
    post_words: int = 6


@dataclass(frozen=True)
class NoFinding:
    """A "no finding" label: 1 when no other finding (except those in ``ignore``) is positive or uncertain."""

    name: str
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    """A loaded, validated vocabulary.

    Attributes:
        name: the vocabulary's own name (written into summaries).
        description: one line for people.
        findings: the findings, in file order: the order of the ``label:`` columns.
        triggers: trigger kind -> phrases (every kind of ``TRIGGER_KINDS`` is present, maybe empty).
        scope: how far triggers reach.
        no_finding: the "no finding" label, or None when the vocabulary defines none.
        source: where it came from ("bundled chest_xray" or the file's name), for summaries and errors.
    """

    name: str
    description: str
    findings: tuple[Finding, ...]
    triggers: Mapping[str, tuple[Phrase, ...]]
    scope: Scope = field(default_factory=Scope)
    no_finding: NoFinding | None = None
    source: str = ""

    @property
    def label_names(self) -> list[str]:
        """Every label this vocabulary writes: "no finding" (when defined) first, then the findings in file order."""
        names = [finding.name for finding in self.findings]
        return [self.no_finding.name, *names] if self.no_finding else names


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error instead of silently winning."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            repeated = key in seen
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears more than once", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def bundled_vocabularies() -> dict[str, Path]:
    """Bundled vocabulary name -> file (``chest_ct``, ``chest_xray``, ``ecg``)."""
    return {path.stem: path for path in sorted(VOCABULARY_DIR.glob("*.yaml"))}


def bundled_trigger_sets() -> dict[str, Path]:
    """Bundled trigger set name -> file (``default``)."""
    return {path.stem: path for path in sorted(TRIGGER_DIR.glob("*.yaml"))}


def _read_yaml(path: Path, where: str) -> Any:
    try:
        data = read_limited(path, MAX_VOCABULARY_BYTES, "vocabulary")
    except ModalityError as error:
        raise VocabularyError(f"{where}: {error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise VocabularyError(f"{where}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise VocabularyError(f"{where}: not valid YAML ({error})") from None


def _check_keys(data: Any, allowed: Sequence[str], where: str, key: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise VocabularyError(f"{where}: {key or 'the file'} must be a mapping, got {type(data).__name__}")
    for name in data:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), list(allowed), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
            prefix = f"{key}." if key else ""
            raise VocabularyError(f"{where}: unknown key {prefix}{name}{hint}")
    return data


def _phrases(value: Any, where: str, key: str, required: bool = False) -> tuple[Phrase, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or (required and not value):
        need = "a non-empty list of phrases" if required else "a list of phrases"
        raise VocabularyError(f"{where}: {key} must be {need}, got {type(value).__name__}")
    phrases = []
    for index, item in enumerate(value):
        try:
            phrases.append(parse_phrase(item))
        except PhraseError as error:
            raise VocabularyError(f"{where}: {key}[{index}]: {error}") from None
    return tuple(phrases)


def _name(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise VocabularyError(f"{where}: {key} must be a non-empty name, got {type(value).__name__}")
    if value != value.strip() or "\n" in value or len(value) > MAX_NAME_CHARS:
        raise VocabularyError(
            f"{where}: {key} must be one line of at most {MAX_NAME_CHARS} characters, no outer spaces"
        )
    if value.lower().startswith("label:"):
        raise VocabularyError(f"{where}: {key} {value!r}: write the finding name only; the column adds 'label:'")
    return value


def _scope(data: Any, where: str) -> Scope:
    if data is None:
        return Scope()
    data = _check_keys(data, _SCOPE_KEYS, where, "scope")
    values = {}
    for key, value in data.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_SCOPE_WORDS:
            raise VocabularyError(f"{where}: scope.{key} must be a whole number from 1 to {_MAX_SCOPE_WORDS}")
        values[key] = value
    return Scope(**values)


def _trigger_lists(data: Any, where: str, key: str, allow_base: bool) -> dict[str, list[Phrase]]:
    allowed = (*TRIGGER_KINDS, "base") if allow_base else (*TRIGGER_KINDS, "description")
    data = _check_keys(data if data is not None else {}, allowed, where, key)
    lists: dict[str, list[Phrase]] = {kind: [] for kind in TRIGGER_KINDS}
    if allow_base and data.get("base") is not None:
        lists = _base_triggers(data["base"], where)
    for kind in TRIGGER_KINDS:
        lists[kind].extend(_phrases(data.get(kind), where, f"{key}.{kind}" if key else kind))
    return lists


def _base_triggers(name: Any, where: str) -> dict[str, list[Phrase]]:
    bases = bundled_trigger_sets()
    if not isinstance(name, str) or name not in bases:
        raise VocabularyError(
            f"{where}: triggers.base {name!r} is not a bundled trigger set (bundled: {', '.join(bases) or 'none'})"
        )
    path = bases[name]
    return _trigger_lists(_read_yaml(path, path.name), path.name, "", allow_base=False)


def _finding(name: Any, data: Any, where: str) -> Finding:
    name = _name(name, where, "a key of findings")
    key = f"findings.{name}"
    data = _check_keys(data, _FINDING_KEYS, where, key)
    return Finding(
        name=name,
        mentions=_phrases(data.get("mentions"), where, f"{key}.mentions", required=True),
        normal=_phrases(data.get("normal"), where, f"{key}.normal"),
        exclude=_phrases(data.get("exclude"), where, f"{key}.exclude"),
    )


def _no_finding(data: Any, findings: Sequence[Finding], where: str) -> NoFinding | None:
    if data is None:
        return None
    data = _check_keys(data, _NO_FINDING_KEYS, where, "no_finding")
    name = _name(data.get("name"), where, "no_finding.name")
    names = {finding.name for finding in findings}
    if name in names:
        raise VocabularyError(f"{where}: no_finding.name {name!r} is also a finding; it is derived from the others")
    ignore = data.get("ignore") or []
    if not isinstance(ignore, list):
        raise VocabularyError(f"{where}: no_finding.ignore must be a list of finding names")
    for index, item in enumerate(ignore):
        if not isinstance(item, str) or item not in names:
            raise VocabularyError(f"{where}: no_finding.ignore[{index}] {item!r} is not one of the findings")
    return NoFinding(name, tuple(ignore))


def parse_vocabulary(data: Any, where: str) -> Vocabulary:
    """Validate a vocabulary read from YAML; ``where`` names it in error messages.

    Raises:
        VocabularyError: naming ``where`` and the offending key.
    """
    data = _check_keys(data, _TOP_KEYS, where, "")
    name = _name(data.get("name"), where, "name")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise VocabularyError(f"{where}: description must be text")
    raw_findings = data.get("findings")
    if not isinstance(raw_findings, Mapping) or not raw_findings:
        raise VocabularyError(f"{where}: findings must be a non-empty mapping of finding name -> phrases")
    findings = tuple(_finding(finding, entry, where) for finding, entry in raw_findings.items())
    triggers = _trigger_lists(data.get("triggers"), where, "triggers", allow_base=True)
    return Vocabulary(
        name=name,
        description=description,
        findings=findings,
        triggers={kind: tuple(phrases) for kind, phrases in triggers.items()},
        scope=_scope(data.get("scope"), where),
        no_finding=_no_finding(data.get("no_finding"), findings, where),
        source=where,
    )


def load_vocabulary(name_or_path: str | Path) -> Vocabulary:
    """A bundled vocabulary by name (``chest_xray``, ``chest_ct``, ``ecg``) or a user's YAML file by path.

    Raises:
        VocabularyError: an unknown name, an unreadable file, or a problem in the file (naming the key).
    """
    bundled = bundled_vocabularies()
    text = str(name_or_path)
    if text in bundled:
        return parse_vocabulary(_read_yaml(bundled[text], f"bundled vocabulary {text}"), f"bundled vocabulary {text}")
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise VocabularyError(
            f"vocabulary {text!r} is neither a bundled vocabulary ({', '.join(bundled)}) nor a .yaml/.yml file"
        )
    return parse_vocabulary(_read_yaml(path, path.name), path.name)
