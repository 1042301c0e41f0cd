"""Rule-based de-identification of report text: identifiers become typed placeholders before text is used or stored.

Reports carry patient names, dates, record numbers, phone numbers, e-mail and postal addresses in headers, signature
lines and running text. Each rule below finds one kind of identifier with a regular expression (plus, for some, a
check of the match); ``Deidentifier`` runs the rules in order and replaces what they find with ``[NAME]``, ``[DATE]``,
``[ID]``, ``[PHONE]``, ``[EMAIL]``, ``[ADDRESS]``, ``[AGE]`` or ``[URL]``. Labels stay ("MRN: [ID]", "Dr. [NAME]"), so
the report keeps its structure and the model learns nothing from the identifiers themselves.

Why rules and not a learned tagger: rules need no model download, run anywhere, are fast, and their behaviour can be
read and audited by a hospital's data-protection office; their recall is measured on the annotated test set in
``tests/data/deid`` (``benchmarks/deid.py``; docs/deid.md lists the rules and the numbers).

Clinical content is protected by construction rather than by an after-the-fact allow-list:

- a capitalised word alone is never a name. Names are recognised only after a title ("Dr.", "Mrs"), after a label
  or signature phrase ("Patient:", "Dictated by", "Electronically signed by", "discussed with"), or as a known first
  name followed by a capitalised surname. Eponyms ("Parkinson disease", "Foley catheter", "Hounsfield units") are
  therefore kept; an eponym followed by a clinical noun is also refused as a name in every context;
- numbers need the shape of an identifier: dates must be valid calendar dates with a 2- or 4-digit year (or a month
  name), IDs need six or more digits, five or more digits mixed with letters, or an ID label ("MRN", "Accession");
  so "3.5 cm", "T2", "C5-C6", "L4/5", "CD14+", "V1-V6", "image 45 of 120", "12-lead", "BP 120/80" are untouched.

Years on their own ("in 2019") are kept, as HIPAA Safe Harbor allows; ages above 89 become ``[AGE]`` unless
``ages_over_89=False``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

PLACEHOLDERS = {kind: f"[{kind}]" for kind in ("NAME", "DATE", "ID", "PHONE", "EMAIL", "ADDRESS", "AGE", "URL")}
_ANY_DIGIT = re.compile(r"\d")
# Masks found spans so later rules cannot match inside them (a noncharacter, not a word character).
MASK_CHARACTER = "\uffff"

# --- vocabularies --------------------------------------------------------------------------------------------------
_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec"
)
# Month names in title case or capitals only: lower-case "may" / "mar" are ordinary words.
MONTH = "(?:" + "|".join(sorted({*_MONTHS.split("|"), *_MONTHS.upper().split("|")}, key=len, reverse=True)) + r")\.?"
WEEKDAY = (
    r"(?:(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|(?:MON|TUES|WEDNES|THURS|FRI|SATUR|SUN)DAY"
    r"|(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\.?),?[ \t]+"
)
_ORDINAL = r"(?:st|nd|rd|th)?"
_TIME = r"(?:,?[ \t]*(?:at[ \t]+)?\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]*[AaPp]\.?[Mm]\.?)?)?"
_NOT_AFTER_NUMBER = r"(?![\w/]|[.-]\d)"  # the number does not go on ("01/02/2023/4", "2023-01-02.5")
_NOT_BEFORE_NUMBER = r"(?<![\w./-])"

# Words that end (or rule out) a name: credentials, departments, report vocabulary, "unknown". Lower-case keys.
NOT_NAME_WORDS = frozenset(
    """
    md m.d do d.o phd ph.d rn np pa pa-c rt rvt rdms rdcs rrt crna dpm mbbs mbchb frcr frcs frcp frcpc mrcp facc facr
    facp dm dnb ms msc bsc mph od consultant registrar attending resident fellow radiologist pathologist physician
    surgeon cardiologist neurologist sonographer technologist technician nurse provider team service clinic hospital
    department dept unit ward center centre radiology pathology cardiology neurology neuroradiology oncology surgery
    medicine emergency ed icu er or gastroenterology endocrinology urology dermatopathology dermatology
    findings impression history technique comparison indication exam examination report addendum procedure
    study date time signed dob mrn age sex gender acc accession id phone tel fax pager email address bed room
    electronically interventional nuclear diagnostic surgical medical general internal vascular thoracic abdominal
    pediatric paediatric body breast musculoskeletal neuro molecular ct mri mr us pet xr cxr ecg ekg eeg echo
    ent gi ir nm msk obgyn ob gyn neurosurgery orthopedics orthopaedics hematology haematology nephrology pulmonology
    rheumatology psychiatry pediatrics paediatrics ophthalmology anesthesia anaesthesia anesthesiology hospitalist
    triage admitting nursing staff lab laboratory pharmacy
    unknown none n/a na self other the this that patient pt per via and or with by to of for in on at from name
    dr doctor mr mrs ms miss mx prof professor sister practitioner med
    monday tuesday wednesday thursday friday saturday sunday
    january february march april may june july august september october november december
    left right bilateral anterior posterior superior inferior
    """.split()
)
# Clinical nouns that follow eponyms ("Parkinson disease", "Foley catheter"): a word followed by one is not a name.
EPONYM_NOUNS = frozenset(
    """
    disease diseases syndrome syndromes sign signs catheter catheters units unit unit's score scores scale scales
    classification criteria lesion lesions fracture fractures tumor tumour tumors node nodes nodule cyst cysts
    pouch lines line sign's procedure operation repair deformity disorder lymphoma sarcoma angle triangle space
    ligament canal duct ducts gland glands body bodies cell cells test maneuver manoeuvre reflex phenomenon type
    stage grade class level protocol pattern palsy ulcer ulcers esophagus diverticulum contracture tube tubes valve
    shunt view views position index ratio equation formula method technique approach staining stain
    """.split()
)
# Eponyms met in reports: never treated as names, even after a first name ("Addison disease" aside, "Grace Graves"
# would still be a name because "Grace" is not followed by an eponym noun). Kept small and documented in docs/deid.md.
EPONYMS = frozenset(
    """
    addison alzheimer baker bankart barrett bell bosniak breslow brooker brunt budd chiari clark colles crohn cushing
    deauville down fleischner foley gleason graves hashimoto hill hodgkin homans hounsfield huntington kerley
    lugano marsh meckel morison nottingham parkinson raynaud salter schmorl sjogren swan ganz tanner virchow weber
    whipple wilms wilson wolff white
    """.split()
)
# Common first names (US, UK, European, and frequent names of other origins). Words that are also ordinary or
# clinical words are left out on purpose (Iris, Rose, Grace-as-verb is fine but Will, May, Mark, Faith, Hope, Joy,
# Bill, Pat, Art, Sky, June): their names are still found after titles, labels and signature phrases.
FIRST_NAMES = frozenset(
    """
    aaron abigail adam adrian aisha alan albert alex alexander alexandra alice alicia alison alistair amanda amelia
    amir amy andrea andrew angela anna anne anthony antonio arthur ashley aylin barbara beatrice ben benjamin beth
    betty brian bruce camila carl carlos carmen carol caroline catherine charles charlotte chen chloe chris
    christina christine christopher claire claudia colin connor craig cynthia daniel david deborah denise diana diane
    dorothy douglas edward elaine eleanor elena elizabeth ellen emily emma eric ethan eva evelyn fatima fiona frank
    gabriel gary george gloria gordon graham greg gregory hannah harold harry heather helen henrik henry hiroshi hugo
    ian ines ingrid isabel isabella jack jacob james jamal jane janet jason javier jennifer jessica joan john jonathan
    jorge jose joseph joshua juan judith julia julie justin karen katherine kathleen kelly kenneth kevin kim laura
    lauren lee leo liam linda lisa lucas lukas luis lily maria marco margaret maria marie marta martin mary matthew
    maya megan mei melissa michael michelle miguel miriam mohammed muhammad nadia nancy natalie nathan nicholas nicole
    nikhil noah nora olivia oliver omar pamela patricia patrick paul paula peter philip priya rachel rahul raj
    ramon rebecca richard robert roger ruth ryan samantha samuel sandra sarah scott sean sharon simon sofia sophia
    sophie stephen steven susan tanya teresa thomas timothy tomasz tyler valerie vanessa victor victoria viktor
    vincent vivian walter wei william yasmin yusuf zoe
    """.split()
)

# A name word: "Smith", "O'Brien", "McAllister", "Grant-Morris", an initial "K." or "A", and (in labelled
# contexts only) capitals "DOE". Particles ("van der", "de") may join two name words.
# Upper and lower case letters of Latin scripts ("Müller", "Łukasz", "Krüger"); Latin Extended-A mixes both cases.
UPPER = "A-Z\u00c0-\u00d6\u00d8-\u00de\u0100-\u017e"
LOWER = "a-z\u00df-\u00f6\u00f8-\u00ff\u0100-\u017e"
_ANY_UPPER = re.compile(f"[{UPPER}]")
# Linear time: a name word has at most four joined parts ("Grant-Morris", "McAllister", "O'Brien"). Unbounded, a
# word pattern tried at every part of a long hyphenated run ("Ab-Ab-Ab-...") rescanned the rest of the run each time.
_TITLE_WORD = (
    rf"(?:[{UPPER}][{LOWER}]*(?:['\u2019-]?[{UPPER}][{LOWER}]+){{1,4}}|[{UPPER}][{LOWER}]+|[{UPPER}]\.?(?![\w'\u2019]))"
)
_CAPS_WORD = rf"(?:[{UPPER}]{{2,}}(?:['\u2019-][{UPPER}]{{2,}}){{0,3}}|[{UPPER}]'[{UPPER}]{{2,}})"
_PARTICLE = r"(?:(?:van|von|der|den|de|del|della|da|di|du|la|le|bin|ibn|al|el|ter)[ \t]+)"
TITLES = r"(?:Dr\.?[ \t]+med\.?|Dr|DR|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse[ \t]+Practitioner|Nurse|Sister)"


@dataclass(frozen=True)
class PhiSpan:
    """One identifier found in a text.

    Attributes:
        start: offset of its first character.
        end: offset after its last character.
        kind: the placeholder type ("NAME", "DATE", "ID", "PHONE", "EMAIL", "ADDRESS", "AGE", "URL").
        rule: the name of the rule that found it (for the benchmark's per-rule view and for debugging).
    """

    start: int
    end: int
    kind: str
    rule: str


Span = tuple[int, int]


@dataclass(frozen=True)
class TextFacts:
    """What is cheap to know about a whole text before any rule runs (one pass each, at C speed)."""

    folded: str  # the text case-folded, for label look-ups
    has_digit: bool  # a character ``\d`` matches
    has_upper: bool  # a character of ``UPPER`` (the rules' capital letters)

    @classmethod
    def of(cls, text: str) -> TextFacts:
        return cls(text.casefold(), _ANY_DIGIT.search(text) is not None, _ANY_UPPER.search(text) is not None)


@dataclass(frozen=True)
class Needs:
    """A pre-filter: what a text must hold for a rule to match anywhere in it.

    Checked once per text with plain string searches, so a rule whose label, digit or capital letter is absent never
    runs its regular expression (most of the time spent on long texts is rules trying their labels at every word).
    It never changes what is found: every match of the rule contains one of ``any_of`` (case-folded) and, when set,
    a digit and a capital letter.

    Attributes:
        any_of: lower-case strings of which one occurs in every match (labels, "@", "^"); empty: no such string.
        digit: every match holds a digit.
        upper: every match holds a character of ``UPPER``.
    """

    any_of: tuple[str, ...] = ()
    digit: bool = False
    upper: bool = False

    def met(self, facts: TextFacts) -> bool:
        if (self.digit and not facts.has_digit) or (self.upper and not facts.has_upper):
            return False
        return not self.any_of or any(needed in facts.folded for needed in self.any_of)


@dataclass(frozen=True)
class DeidRule:
    """One pattern for one kind of identifier.

    Attributes:
        name: short identifier of the rule.
        kind: the placeholder type it produces.
        pattern: the regular expression; the identifier is the group named ``phi`` (the whole match otherwise), so
            labels such as "MRN:" or "Dr." can be part of the match but stay in the text.
        check: optional refinement of a match: returns the span to replace, or None to reject the match (calendar
            validity of a date, trimming credentials off a name, refusing eponyms).
        optional: name of the ``Deidentifier`` switch that turns the rule off ("ages_over_89"), or "".
        needs: what a text must hold for the pattern to match at all (``Needs``); None runs it on every text.
    """

    name: str
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[re.Match[str]], Span | None] | None = None
    optional: str = ""
    needs: Needs | None = None

    def spans(self, text: str) -> Iterable[Span]:
        for match in self.pattern.finditer(text):
            group = "phi" if "phi" in self.pattern.groupindex and match.group("phi") is not None else 0
            span = self.check(match) if self.check is not None else match.span(group)
            if span is not None and span[1] > span[0]:
                yield span


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.VERBOSE)


# --- checks --------------------------------------------------------------------------------------------------------
def _valid_numeric_date(match: re.Match[str]) -> Span | None:
    """Day/month in either order (US and European formats) must be a possible calendar date."""
    first, second = int(match.group("a")), int(match.group("b"))
    if (1 <= first <= 12 and 1 <= second <= 31) or (1 <= first <= 31 and 1 <= second <= 12):
        return match.span("phi")
    return None


def _enough_digits(minimum: int) -> Callable[[re.Match[str]], Span | None]:
    def check(match: re.Match[str]) -> Span | None:
        return match.span("phi") if sum(char.isdigit() for char in match.group("phi")) >= minimum else None

    return check


_WORD = re.compile(rf"[{UPPER}{LOWER}][{UPPER}{LOWER}.'\u2019-]*")
# The word after a candidate name (an eponym noun such as "disease" refuses it). Matched in place, never on a slice of
# the rest of the text (that copy per candidate was quadratic); longer words than any eponym noun are not looked at.
_FOLLOWING_WORD = re.compile(r"[ \t]*(?:['\u2019]s?[ \t]+)?([A-Za-z]{1,32})(?![A-Za-z])")


def _name_span(match: re.Match[str]) -> Span | None:
    """Trim credentials / report words off the end of a candidate name; refuse eponyms and non-names.

    ``"Sarah Whitfield, MD"`` -> ``"Sarah Whitfield"``; ``"Emergency Department"`` -> None; ``"Parkinson disease"``
    never reaches here (lower case), ``"Foley Catheter"`` -> None (eponym + clinical noun).
    """
    start, end = match.span("phi")
    text = match.string
    words = [(start + word.start(), start + word.end()) for word in _WORD.finditer(text[start:end])]

    def bare(span: Span) -> str:
        return text[span[0] : span[1]].strip(".'\u2019-").lower()

    while words and bare(words[-1]) in NOT_NAME_WORDS:
        words.pop()
    if not words or bare(words[0]) in NOT_NAME_WORDS:
        return None
    following = _FOLLOWING_WORD.match(text, words[-1][1])
    if following and following.group(1).lower() in EPONYM_NOUNS:
        return None  # "Sister Mary Joseph nodule", "Dr. Parkinson disease": an eponym, whatever precedes it
    if len(words) >= 2 and bare(words[-1]) in EPONYM_NOUNS:
        return None
    last_end = words[-1][1]
    if text[last_end - 1] == "." and len(text[words[-1][0] : last_end]) > 2:
        last_end -= 1  # "Smith." at a sentence end: the dot is punctuation; "K." keeps its dot
    return words[0][0], last_end


def _digit_groups_span(match: re.Match[str]) -> Span | None:
    """Hyphenated digit groups with seven or more digits ("2023-001234"), but not a year range ("2019-2020")."""
    value = match.group("phi")
    if re.fullmatch(r"(?:19|20)\d{2}-(?:(?:19|20)\d{2}|\d{2})", value) or sum(map(str.isdigit, value)) < 7:
        return None
    return match.span("phi")


def _first_name_span(match: re.Match[str]) -> Span | None:
    first = match.group("first").lower()
    if first not in FIRST_NAMES:
        return None
    return _name_span(match)


# --- rule patterns -------------------------------------------------------------------------------------------------
_NAME_SEPARATOR = r"(?:[ \t]+|,[ \t]*|\^)"
_NAME_END = r"(?![\w-]|['\u2019](?![sS]\b))"  # the name ends here; a possessive "'s" may follow
_TITLE_NAME = rf"(?:{_PARTICLE}?{_TITLE_WORD})(?:[ \t]+{_PARTICLE}?{_TITLE_WORD}){{0,3}}{_NAME_END}"
_LABELLED_NAME = (
    rf"(?:{_CAPS_WORD}|{_PARTICLE}?{_TITLE_WORD})(?:{_NAME_SEPARATOR}(?:{_CAPS_WORD}|{_PARTICLE}?{_TITLE_WORD})){{0,3}}"
    rf"{_NAME_END}"
)
# "<verb>ed by" that describes findings, not people ("caused by", "complicated by"): never followed by a name.
_FINDING_VERBS = (
    r"caused|complicated|characteri[sz]ed|surrounded|accompanied|supplied|replaced|compressed|displaced|marked"
    r"|bordered|separated|demonstrated|indicated|suggested|evidenced|manifested|produced|mediated|induced|triggered"
    r"|affected|involved|drained|fed|filled|formed|lined|outlined|covered|obscured|limited|degraded|shown|detected"
    r"|identified|measured|followed|preceded|explained|defined|classified|staged|graded|confirmed|excluded"
)
_OPTIONAL_TITLE = rf"(?:{TITLES}\.?[ \t]+)?"
# Labels that need a colon (or "#") because the word alone is common ("Patient", "Name", "Physician").
_COLON_NAME_LABELS = (
    r"patient(?:'s)?[ \t]+name|patient|pt[ \t]+name|pt|name"
    r"|referring(?:[ \t]+(?:physician|doctor|provider|clinician|md))?"
    r"|ordering(?:[ \t]+(?:physician|provider|md|clinician))?|attending(?:[ \t]+physician)?|radiologist|pathologist"
    r"|physician|provider|technologist|technician|tech|sonographer|resident|fellow|surgeon|operator|cardiologist"
    r"|examiner|(?:reading|interpreting|dictating|primary[ \t]+care)[ \t]+(?:physician|radiologist)|pcp|cc|copy[ \t]+to"
    r"|signed|next[ \t]+of[ \t]+kin|nok|emergency[ \t]+contact|guardian|re|nurse|decedent|deceased|scribe"
)
# Signature phrases: a name follows directly (colon optional), possibly in capitals ("Confirmed by SHAH, NIKHIL").
_SIGNATURE_LABELS = (
    r"(?:electronically[ \t]+)?(?:(?:signed|dictated|transcribed|reported|verified|read|interpreted|reviewed|approved"
    r"|confirmed|performed|requested|ordered|examined|seen|attested|addendum)(?:[ \t]+out)?[ \t]+by|signed)"
)
# Running-text phrases: a title-case name follows directly ("discussed with Jane Roe", "daughter Karen Lowe").
_PHRASE_NAME_LABELS = (
    r"discussed[ \t]+with|communicated[ \t]+to|called[ \t]+to|relayed[ \t]+to|given[ \t]+to|d/w"
    r"|mother|father|wife|husband|son|daughter|brother|sister|spouse|partner|patient|pt|regards,?|sincerely,?"
    r"|grandmother|grandfather|grandson|granddaughter|aunt|uncle|niece|nephew|cousin|friend|neighbou?r|caregiver"
    r"|carer|guardian|fianc[eé]e?|girlfriend|boyfriend|decedent"
    r"|technician|technologist|tech|sonographer|radiologist|pathologist|resident|fellow|operator|coordinator"
    r"|scribe|therapist|dietitian|pharmacist|social[ \t]+worker|case[ \t]+manager|chaplain|interpreter|midwife"
    r"|paramedic|intern|registrar|consultant|physician|surgeon|anaesthetist|anesthetist|anesthesiologist"
    r"|endoscopist|prosector|physicist|dosimetrist|optometrist|nurse"
)
_ID_LABELS_STRONG = (
    r"mrn|mr\#|mr[ \t]+no\.?|med(?:ical)?[ \t]+rec(?:ord)?(?:[ \t]+(?:number|no\.?))?"
    r"|acc(?:ession)?(?:[ \t]+(?:number|no\.?))?"
    r"|ssn|social[ \t]+security(?:[ \t]+number)?|nhs(?:[ \t]+(?:number|no\.?))?|hospital[ \t]+(?:number|no\.?)|csn|fin"
    r"|patient[ \t]+id|pid|lab[ \t]+accession"
)
# Weaker labels ("case", "order", "study") need a number marker: "Case #", "Order No.", "Study ID:".
_ID_LABELS_WEAK = (
    r"case|order|visit|encounter|account|acct|specimen|sample|slide|block|study|exam|requisition|req|lab|eeg|ecg|ekg"
    r"|device|serial|lot|member|policy|insurance|license|licence|record|id|reg(?:istration)?\.?|episode|autopsy"
)
_ID_MARKER = r"(?:[ \t]*(?i:\#|no\.?|number|num|id)(?![A-Za-z]))"
_ID_VALUE = (
    r"(?:\d{3}[ \t]\d{3}[ \t]\d{4}(?!\d)"  # NHS number 943 476 5919
    r"|[A-Za-z]{1,4}[ \t]\d{2}[ \t]\d{3,}(?!\d)"  # "LB 23 004871"
    r"|(?=[\w/.-]{0,63}\d)[A-Za-z0-9][\w/.-]{0,62}[A-Za-z0-9]|\d)"  # at most 64 characters: linear time
)
_PHONE_NUMBER = (
    r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,5}\)[ .-]?)?\d[\d .-]{2,14}\d(?:[ \t]*(?:x|ext\.?|extension)[ \t]*\d{1,6})?"
)
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace|Ter|Circle|Cir"
    r"|Parkway|Pkwy|Highway|Hwy|Square|Sq|Close|Crescent|Gardens|Grove|Row|Walk|Mews|Hill)"
)
# "25 rue de Rivoli", "12 via Roma", and the German/Dutch "Musterstraße 12", "Kerkstraat 4".
_EUROPEAN_STREET = (
    r"rue|avenue|av\.|boulevard|bd|chemin|all[eé]e|impasse|via|viale|piazza|calle|avenida|plaza|rua|travessa"
)
_EUROPEAN_STREET_ENDING = (
    r"stra(?:ß|ss)e|str|weg|platz|allee|gasse|ring|damm|straat|laan|gracht|plein|vej|gade|gatan|v[äa]gen"
)
_STREET_NAME_WORD = r"(?:[A-Z][a-z]+|\d+(?:st|nd|rd|th))"  # "Maple", "120th"
_UNIT = r"(?:(?:Apt|Apartment|Unit|Suite|Ste|Flat|Floor|Fl|Room|\#)\.?[ \t]*\#?[ \t]*\w+)"
_POSTCODE_UK = r"[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}"
_POSTCODE_CA = r"[A-Z]\d[A-Z][ \t]?\d[A-Z]\d"
_ZIP = rf"(?:\d{{5}}(?:-\d{{4}})?|{_POSTCODE_CA})"
_CITY_STATE_ZIP = (  # ", Springfield, IL 62704" / ", London N7 8JG" / ", Boston 02115", each part optional
    rf"(?:,[ \t]*[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){{0,2}})?"
    rf"(?:[ \t]+{_POSTCODE_UK}\b|,?[ \t]*[A-Z]{{2}}\b(?:[ \t]+{_ZIP}\b)?|[ \t]+{_ZIP}\b)?"
)

_RULES: tuple[DeidRule, ...] = (
    # --- e-mail and web addresses first: they contain names and digits that later rules would split -------------
    # The local part starts where its run of characters starts: tried from every position inside a long run (no "@"
    # after it), the match took time quadratic in the run's length.
    DeidRule("email", "EMAIL", _compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")),
    DeidRule("url", "URL", _compile(r"(?:https?://|www\.)[^\s<>\"')\]]+[^\s<>\"')\].,;:]")),
    # --- labelled values: the label tells the kind --------------------------------------------------------------------
    DeidRule(
        "labelled_phone",
        "PHONE",
        _compile(
            rf"""\b(?i:telephone|phone|tel|fax|pager|pgr|beeper|bleep|cell|mobile|ph|contact[ \t]+number|call[ \t]?back
            |ext\.|extension)(?:[ \t]*(?i:number|no\.|\#))?[ \t]*[:\#]?[ \t]*(?:at[ \t]+)?(?P<phi>{_PHONE_NUMBER})
            (?![\w.]?\d)"""
        ),
        _enough_digits(4),
    ),
    DeidRule("phone_extension", "PHONE", _compile(r"(?<![\w.])x(?P<phi>\d{4,6})\b")),
    DeidRule(
        "labelled_id_strong",
        "ID",
        _compile(
            rf"\b(?i:{_ID_LABELS_STRONG})(?![A-Za-z]){_ID_MARKER}?[ \t]*[:\#]?[ \t]*(?P<phi>{_ID_VALUE})(?![\w-])"
        ),
    ),
    DeidRule(
        "labelled_id_weak",
        "ID",
        _compile(rf"\b(?i:{_ID_LABELS_WEAK})(?![A-Za-z]){_ID_MARKER}[ \t]*[:\#]?[ \t]*(?P<phi>{_ID_VALUE})(?![\w-])"),
        _enough_digits(3),  # "exam #2" is a count, not an identifier
    ),
    DeidRule(
        "labelled_id_bare",
        "ID",
        _compile(rf"\b(?:ID|Id)[ \t]*[:\#]?[ \t]*(?P<phi>{_ID_VALUE})(?![\w-])"),
        _enough_digits(3),
    ),
    DeidRule(
        "labelled_date_compact",
        "DATE",
        _compile(
            r"\b(?i:date|dob|d\.o\.b\.|birth[ \t]?date|date[ \t]+of[ \t]+birth|born)[ \t]*[:\#]?[ \t]*"
            r"(?P<phi>(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))\b"
        ),
    ),
    # --- dates ------------------------------------------------------------------------------------------------
    DeidRule(
        "date_iso",
        "DATE",
        _compile(
            rf"""{_NOT_BEFORE_NUMBER}(?P<phi>(?:{WEEKDAY})?(?:19|20)\d{{2}}(?P<sep>[/.-])(?:0?[1-9]|1[0-2])(?P=sep)
            (?:0?[1-9]|[12]\d|3[01])(?:[T ]\d{{1,2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?(?:Z|[+-]\d{{2}}:?\d{{2}})?)?)
            {_NOT_AFTER_NUMBER}"""
        ),
    ),
    DeidRule(
        "date_numeric",
        "DATE",
        _compile(
            rf"""{_NOT_BEFORE_NUMBER}(?P<phi>(?:{WEEKDAY})?(?P<a>\d{{1,2}})(?P<sep>[/-])(?P<b>\d{{1,2}})(?P=sep)
            (?:(?:19|20)\d{{2}}|\d{{2}}){_TIME}){_NOT_AFTER_NUMBER}"""
        ),
        _valid_numeric_date,
    ),
    DeidRule(
        "date_dotted",
        "DATE",
        _compile(
            rf"{_NOT_BEFORE_NUMBER}(?P<phi>(?P<a>\d{{1,2}})\.(?P<b>\d{{1,2}})\.(?:19|20)\d{{2}}){_NOT_AFTER_NUMBER}"
        ),
        _valid_numeric_date,
    ),
    DeidRule(
        "date_month_name",
        "DATE",
        _compile(
            rf"""\b(?P<phi>(?:{WEEKDAY})?(?:
              {MONTH}[ \t]*\d{{1,2}}{_ORDINAL},?(?:[ \t]*(?:19|20)\d{{2}})?             # Jan 2, 2023 / March 3rd
            | \d{{1,2}}{_ORDINAL}(?:[ \t]+of)?[ \t]*{MONTH},?(?:[ \t]*(?:19|20)\d{{2}})?  # 2 January 2023 / 12th of Aug
            | \d{{1,2}}-{MONTH}-(?:(?:19|20)\d{{2}}|\d{{2}})                           # 22-NOV-2021 / 5-Feb-1960
            | \d{{1,2}}{MONTH}(?:19|20)\d{{2}}                                         # 02JAN2023
            | {MONTH},?[ \t]+(?:19|20)\d{{2}}                                          # June 2021
            ){_TIME})(?![\w])"""
        ),
    ),
    DeidRule(
        "date_month_year_numeric",
        "DATE",
        _compile(rf"{_NOT_BEFORE_NUMBER}(?P<phi>(?:0?[1-9]|1[0-2])/(?:19|20)\d{{2}}){_NOT_AFTER_NUMBER}"),
    ),
    # --- phone numbers by shape --------------------------------------------------------------------------------
    DeidRule(
        "phone_us",
        "PHONE",
        _compile(
            r"""(?<![\w.+-])(?P<phi>(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}
            (?:[ \t]*(?:x|ext\.?|extension)[ \t]*\d{1,6})?)(?![\w]|[.-]\d)"""
        ),
    ),
    DeidRule(
        "phone_international",
        "PHONE",
        _compile(r"(?<![\w+])(?P<phi>\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,5})(?![\w]|[.-]\d)"),
        _enough_digits(8),
    ),
    DeidRule("phone_uk", "PHONE", _compile(r"(?<![\w.-])(?P<phi>0\d{2,4}[ ]\d{3,4}[ ]?\d{3,4})(?![\w]|[.-]\d)")),
    DeidRule("phone_local", "PHONE", _compile(r"(?<![\w./-])(?P<phi>\d{3}-\d{4})(?![\w/-]|\.\d)")),
    DeidRule("ssn", "ID", _compile(r"(?<![\w-])(?P<phi>\d{3}-\d{2}-\d{4})(?![\w-])")),
    # --- postal addresses --------------------------------------------------------------------------------------
    DeidRule(
        "labelled_address",
        "ADDRESS",
        _compile(
            r"""\b(?i:home[ \t]+address|address(?:[ \t]+on[ \t]+file)?|addr\.?|residence)[ \t]*:[ \t]*
            (?P<phi>[^\n:]+?)(?=(?<![ \t])[ \t]+[A-Za-z][\w ]{0,25}:|(?<![ \t.])[ \t.]*(?:\n|$))"""
        ),
        # Linear time: the value must hold a digit (checked on the match, not by a look-ahead over the rest of the
        # line at every label), and the end-of-value look-ahead runs only where a run of spaces or dots starts.
        _enough_digits(1),
    ),
    DeidRule(
        "street_address",
        "ADDRESS",
        _compile(
            rf"""\b(?P<phi>(?:{_UNIT},?[ \t]+)?\d{{1,6}}[A-Z]?(?:[ \t]+[NSEW]\.?)?
            (?:[ \t]+{_STREET_NAME_WORD}){{1,3}}[ \t]+{_STREET_SUFFIX}\b\.?(?:,?[ \t]*{_UNIT})?{_CITY_STATE_ZIP})"""
        ),
    ),
    DeidRule(
        "city_state_zip",
        "ADDRESS",
        _compile(
            rf"""\b(?P<phi>(?:\d{{1,6}}(?:[ \t]+[A-Z][a-z]+){{1,4}},[ \t]*(?:{_UNIT},[ \t]*)?)?
            [A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){{0,2}},[ \t]*[A-Z]{{2}}[ \t]+{_ZIP})\b"""
        ),
    ),
    DeidRule(
        "street_address_european",
        "ADDRESS",
        _compile(
            rf"""\b(?P<phi>(?:\d{{1,4}}[a-z]?,?[ \t]+(?i:{_EUROPEAN_STREET})(?:[ \t]+[{UPPER}{LOWER}'-]+){{1,4}}
            |[{UPPER}][{LOWER}]*(?i:{_EUROPEAN_STREET_ENDING})\.?[ \t]+\d{{1,4}}[a-z]?)
            (?:,[ \t]*\d{{4,5}}[ \t]+[{UPPER}][{LOWER}]+(?:[ \t-]+[{UPPER}][{LOWER}]+)*)?)"""
        ),
    ),
    # Standalone postcodes only with their space ("N7 8JG"): unspaced they look like ECG and staging codes
    # ("S1Q3T3"); after a street or city they are found by the rules above.
    DeidRule("postcode_uk", "ADDRESS", _compile(r"\b(?P<phi>[A-Z]{1,2}\d[A-Z\d]?[ ]\d[A-Z]{2})\b")),
    DeidRule("postcode_canada", "ADDRESS", _compile(r"\b[A-Z]{2}[ \t]+(?P<phi>[A-Z]\d[A-Z][ ]\d[A-Z]\d)\b")),
    DeidRule("po_box", "ADDRESS", _compile(r"\b(?P<phi>(?i:p\.?[ \t]?o\.?[ \t]+box)[ \t]+\d+)\b")),
    # --- remaining identifier-shaped numbers ---------------------------------------------------------------------
    DeidRule(
        "alphanumeric_id",
        "ID",
        _compile(
            r"""(?<![\w./-])(?P<phi>(?=[A-Za-z0-9/-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9]|[/-](?=[A-Za-z0-9])){4,})
            (?![\w/-])"""
        ),
        _enough_digits(5),
    ),
    # Seven digits or more: six-digit values are common lab counts ("platelets 250000"); labelled IDs of any length
    # are found by the label rules above.
    DeidRule("long_number", "ID", _compile(r"(?<![\w.,])(?P<phi>\d{7,})(?![\w]|[.,]\d)")),
    DeidRule(
        "digit_groups",
        "ID",
        _compile(r"(?<![\w.-])(?P<phi>\d{2,}(?:-\d{2,}){1,3})(?![\w-]|\.\d)"),
        _digit_groups_span,
    ),
    # --- names ---------------------------------------------------------------------------------------------------
    DeidRule("title_name", "NAME", _compile(rf"\b{TITLES}\.?[ \t]+(?P<phi>{_TITLE_NAME})"), _name_span),
    DeidRule(
        "labelled_name",
        "NAME",
        _compile(
            rf"\b(?i:{_COLON_NAME_LABELS})[ \t]*(?:[:\#]|-(?=[ \t]))[ \t]*{_OPTIONAL_TITLE}(?P<phi>{_LABELLED_NAME})"
        ),
        _name_span,
    ),
    DeidRule(
        "signature_by",
        "NAME",
        _compile(rf"\b(?i:{_SIGNATURE_LABELS})[ \t]*:?[ \t]*{_OPTIONAL_TITLE}(?P<phi>{_LABELLED_NAME})"),
        _name_span,
    ),
    DeidRule(
        "phrase_name",
        "NAME",
        _compile(
            rf"""(?:^|(?<=[\s(,;]))(?i:{_PHRASE_NAME_LABELS})[ \t]*:?[ \t]*{_OPTIONAL_TITLE}(?P<phi>{_TITLE_NAME})"""
        ),
        _name_span,
    ),
    DeidRule(
        "name_before_age",
        "NAME",
        _compile(
            rf"""(?:^|(?<=[\n:]))[ \t]*(?P<phi>{_TITLE_WORD}(?:[ \t]+{_TITLE_WORD}){{1,2}})
            (?=[ \t]*[,(][ \t]*\d{{1,3}}[ \t-]*(?i:y|yo|yr|year|years|-year))"""
        ),
        _name_span,
    ),
    DeidRule(
        "by_name",
        "NAME",
        _compile(
            rf"""\b(?!(?i:{_FINDING_VERBS})\b)(?i:[a-z]+ed|report|documentation|dictation|note|letter|review|photos?
            |images?)[ \t]+by[ \t]+(?P<phi>{_TITLE_WORD}[ \t]+{_TITLE_WORD}(?:[ \t]+{_TITLE_WORD})?){_NAME_END}"""
        ),
        _name_span,
    ),
    DeidRule(
        "dicom_name",
        "NAME",
        _compile(rf"\b(?P<phi>{_CAPS_WORD}\^{_CAPS_WORD}(?:\^{_CAPS_WORD}){{0,3}}|{_TITLE_WORD}\^{_TITLE_WORD})"),
    ),
    DeidRule(
        "first_last_name",
        "NAME",
        _compile(
            rf"""\b(?P<phi>(?P<first>[A-Z][a-z]+)(?:[ \t]+[A-Z]\.)?[ \t]+{_PARTICLE}?
            [{UPPER}][{LOWER}]*(?:['\u2019-]?[{UPPER}][{LOWER}]+)*){_NAME_END}"""
        ),
        _first_name_span,
    ),
    DeidRule(
        "signature_line",
        "NAME",
        _compile(
            rf"""(?m:^)[ \t]*(?P<phi>{_TITLE_WORD}(?:[ \t]+{_TITLE_WORD}){{1,2}}),[ \t]*
            (?=(?:MD|M\.D\.|DO|PhD|MBBS|FRCR|RN|NP|PA-C|RVT|RDCS|RDMS)\b)"""
        ),
        _name_span,
    ),
    # --- ages above 89 (HIPAA Safe Harbor) ---------------------------------------------------------------------
    DeidRule(
        "age_over_89",
        "AGE",
        _compile(
            r"""(?<![\w.])(?:(?i:aged?|age:)[ \t]*:?[ \t]*(?P<labelled>9\d|1[0-4]\d)(?![\w.])
            |(?P<phi>9\d|1[0-4]\d)(?=[ \t-]*(?i:years?|yrs?|y/?o|y\.o\.)\b))"""
        ),
        lambda match: match.span("labelled") if match.group("labelled") else match.span("phi"),
        optional="ages_over_89",
    ),
    DeidRule(
        "age_after_name",
        "AGE",
        _compile(r"(?<=\uffff),[ \t]*(?P<phi>9\d|1[0-4]\d)(?=[ \t]*[.,;)\n])"),
        optional="ages_over_89",
    ),
    DeidRule(
        "age_now",
        "AGE",
        _compile(r"\b(?i:now|aged)[ \t]+(?P<phi>9\d|1[0-4]\d)(?![\w.])"),
        optional="ages_over_89",
    ),
)


DIGIT, UPPER_LETTER = Needs(digit=True), Needs(upper=True)
# What each built-in rule needs (see ``Needs``): labels from its label alternation (any one of them, shortened to a
# string every spelling contains), a digit when every alternative holds one, a capital when every match starts a name
# word or a capitalised literal. ``tests/modalities/report`` checks that the pre-filter never changes a finding.
RULE_NEEDS: dict[str, Needs] = {
    "email": Needs(any_of=("@",)),
    "url": Needs(any_of=("http", "www.")),
    "labelled_phone": Needs(
        any_of=("tel", "ph", "fax", "pager", "pgr", "beeper", "bleep", "cell", "mobile", "contact", "call", "ext"),
        digit=True,
    ),
    "phone_extension": Needs(any_of=("x",), digit=True),
    "labelled_id_strong": Needs(
        any_of=("mr", "med", "acc", "ssn", "social", "nhs", "hospital", "csn", "fin", "patient", "pid", "lab"),
        digit=True,
    ),
    "labelled_id_weak": Needs(
        any_of=(
            *("case", "order", "visit", "encounter", "acc", "specimen", "sample", "slide", "block", "study", "exam"),
            *("req", "lab", "eeg", "ecg", "ekg", "device", "serial", "lot", "member", "policy", "insurance", "licen"),
            *("record", "id", "reg", "episode", "autopsy"),
        ),
        digit=True,
    ),
    "labelled_id_bare": Needs(any_of=("id",), digit=True),
    "labelled_date_compact": Needs(any_of=("date", "dob", "d.o.b", "birth", "born"), digit=True),
    "date_iso": DIGIT,
    "date_numeric": DIGIT,
    "date_dotted": DIGIT,
    "date_month_name": Needs(digit=True, upper=True),
    "date_month_year_numeric": DIGIT,
    "phone_us": DIGIT,
    "phone_international": DIGIT,
    "phone_uk": DIGIT,
    "phone_local": DIGIT,
    "ssn": DIGIT,
    "labelled_address": Needs(any_of=("addr", "residence"), digit=True),
    "street_address": Needs(digit=True, upper=True),
    "city_state_zip": Needs(digit=True, upper=True),
    "street_address_european": DIGIT,
    "postcode_uk": Needs(digit=True, upper=True),
    "postcode_canada": Needs(digit=True, upper=True),
    "po_box": Needs(any_of=("box",), digit=True),
    "alphanumeric_id": DIGIT,
    "long_number": DIGIT,
    "digit_groups": DIGIT,
    "title_name": UPPER_LETTER,
    "labelled_name": Needs(any_of=(":", "#", "-"), upper=True),
    "signature_by": Needs(any_of=("by", "signed"), upper=True),
    "phrase_name": UPPER_LETTER,
    "name_before_age": Needs(digit=True, upper=True),
    "by_name": Needs(any_of=("by",), upper=True),
    "dicom_name": Needs(any_of=("^",), upper=True),
    "first_last_name": UPPER_LETTER,
    "signature_line": Needs(any_of=(",",), upper=True),
    "age_over_89": DIGIT,
    "age_after_name": DIGIT,
    "age_now": Needs(any_of=("now", "aged"), digit=True),
}
RULES: tuple[DeidRule, ...] = tuple(dataclasses.replace(rule, needs=RULE_NEEDS[rule.name]) for rule in _RULES)

_PIECE = re.compile(rf"[^{MASK_CHARACTER}]+")
_EDGE = f" \t\n,;:.-{MASK_CHARACTER}"


def unmasked_pieces(masked: str, start: int, end: int) -> list[Span]:
    """The parts of a match not already claimed by an earlier rule, trimmed of spaces and punctuation at the edges.

    A line-long match ("Address: ... Phone: [PHONE]") may run over an earlier finding; only its new parts count.
    """
    pieces = []
    for piece in _PIECE.finditer(masked, start, end):
        text = piece.group()
        left = len(text) - len(text.lstrip(_EDGE))
        right = len(text.rstrip(_EDGE))
        if right > left and any(char.isalnum() for char in text[left:right]):
            pieces.append((piece.start() + left, piece.start() + right))
    return pieces


def masked_text(text: str, spans: Sequence[Span]) -> str:
    """``text`` with ``spans`` (one rule's findings, in order, disjoint) overwritten by the mask character.

    Built in one pass: re-slicing the whole text once per finding was quadratic in the number of findings.
    """
    pieces: list[str] = []
    position = 0
    for start, end in sorted(spans):
        start = max(start, position)
        if end <= start:
            continue
        pieces.append(text[position:start])
        pieces.append(MASK_CHARACTER * (end - start))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


class Deidentifier:
    """Finds identifiers with ``rules`` (in order) and replaces them with typed placeholders.

    Rules run in order on the text with earlier findings masked, so a phone number inside an e-mail address or a
    date inside an ID is found once, by the more specific rule. Replacing is idempotent: placeholders contain no
    digits and are not names, so de-identifying de-identified text changes nothing.

    Args:
        ages_over_89: replace ages above 89 (HIPAA Safe Harbor; a quasi-identifier in small populations).
        rules: the rule set; ``RULES`` by default.
    """

    def __init__(self, ages_over_89: bool = True, rules: Sequence[DeidRule] = RULES) -> None:
        switches = {"ages_over_89": ages_over_89}
        self.rules = tuple(rule for rule in rules if not rule.optional or switches[rule.optional])

    def find(self, text: str) -> list[PhiSpan]:
        """Every identifier in ``text``, sorted by position, non-overlapping."""
        # the mask character in the input would read as earlier findings
        masked = text.replace(MASK_CHARACTER, "\ufffd")
        facts = TextFacts.of(masked)
        found: list[PhiSpan] = []
        for rule in self.rules:
            if rule.needs is not None and not rule.needs.met(facts):
                continue
            spans = [piece for span in rule.spans(masked) for piece in unmasked_pieces(masked, *span)]
            found.extend(PhiSpan(start, end, rule.kind, rule.name) for start, end in spans)
            if spans:
                masked = masked_text(masked, spans)
        return sorted(found, key=lambda span: span.start)

    def __call__(self, text: str) -> str:
        """``text`` with every identifier replaced by its placeholder."""
        return self.replace(text, self.find(text))

    @staticmethod
    def replace(text: str, spans: Iterable[PhiSpan]) -> str:
        """``text`` with the given (sorted, non-overlapping) spans replaced by their placeholders."""
        pieces: list[str] = []
        position = 0
        for span in spans:
            pieces.append(text[position : span.start])
            pieces.append(PLACEHOLDERS[span.kind])
            position = span.end
        pieces.append(text[position:])
        return "".join(pieces)


_DEFAULT = Deidentifier()


def deidentify(text: str, ages_over_89: bool = True) -> str:
    """Replace names, dates, IDs, phone numbers, e-mail/web/postal addresses (and ages > 89) with placeholders."""
    return (_DEFAULT if ages_over_89 else Deidentifier(ages_over_89=False))(text)
