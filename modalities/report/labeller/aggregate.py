"""Mentions -> one state per finding, and states -> label values, with CheXpert's rules.

Per finding, over all its mentions in the report: any positive mention -> positive; else any uncertain one ->
uncertain; else any negated one -> negative; no mention -> not mentioned. So "no effusion ... small left effusion"
is positive, as a report that contradicts itself most often corrects itself towards the finding.

A state becomes a ``label:<finding>`` value: positive -> 1, negative -> 0, not mentioned -> blank, and uncertain by
the uncertainty policy (Irvin et al. 2019, CheXpert): ``blank`` (U-Ignore: leave it unknown, the default: the losses
and metrics skip unknown labels), ``1`` (U-Ones: count hedged findings as present) or ``0`` (U-Zeros).

"No finding" (when the vocabulary defines it): negative when any other finding (except those it ignores, such as
support devices) is positive, uncertain when none is positive but one is uncertain, else positive; it is never "not
mentioned", since a report that mentions none of the findings has none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .scope import NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN

U_IGNORE = "blank"
U_ONES = "1"
U_ZEROS = "0"
UNCERTAIN_POLICIES: dict[str, int | None] = {U_IGNORE: None, U_ONES: 1, U_ZEROS: 0}
_STATE_VALUES: dict[str, int | None] = {POSITIVE: 1, NEGATIVE: 0, NOT_MENTIONED: None}


def finding_state(statuses: Iterable[str]) -> str:
    """One finding's state from the statuses of its mentions (CheXpert's precedence)."""
    seen = set(statuses)
    for state in (POSITIVE, UNCERTAIN, NEGATIVE):
        if state in seen:
            return state
    return NOT_MENTIONED


def no_finding_state(states: Mapping[str, str], ignore: Sequence[str] = ()) -> str:
    """The "no finding" state from the other findings' states."""
    counted = [state for name, state in states.items() if name not in ignore]
    if POSITIVE in counted:
        return NEGATIVE
    if UNCERTAIN in counted:
        return UNCERTAIN
    return POSITIVE


def check_policy(policy: str) -> str:
    """``policy`` if it names an uncertainty policy; a ValueError listing them otherwise."""
    if policy not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy must be one of {', '.join(UNCERTAIN_POLICIES)}, got {policy!r}")
    return policy


def label_value(state: str, policy: str = U_IGNORE) -> int | None:
    """1, 0 or None (blank) for a finding state under the uncertainty ``policy``."""
    if state == UNCERTAIN:
        return UNCERTAIN_POLICIES[check_policy(policy)]
    return _STATE_VALUES[state]
