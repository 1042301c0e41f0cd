"""Pseudonymisation at ingest: patient and study identifiers become keyed hashes the moment a manifest is read.

A keyed HMAC (not a plain hash) is used because hospital identifiers have little entropy: anyone could hash every
possible medical record number and reverse a plain SHA-256. With a secret key the pseudonyms are stable (the same
patient always gets the same pseudonym, so splits and linkage across runs work) but cannot be reversed without the key.
Losing the key breaks that linkage, which is why creating a new one is logged with its location.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import string
from pathlib import Path

logger = logging.getLogger("medclip.data")

KEY_ENV = "MEDCLIP_PSEUDONYM_KEY"  # the key itself, as hex or as text
KEY_FILE_ENV = "MEDCLIP_PSEUDONYM_KEY_FILE"  # a file holding the key
DEFAULT_KEY_FILE = Path("~/.config/medclip/pseudonym.key")
MIN_KEY_BYTES = 16  # shorter keys can be brute-forced together with the low-entropy identifiers they protect
NEW_KEY_BYTES = 32
PREFIXES = {"patient": "p", "study": "s"}  # pseudonym kind -> prefix, so a pseudonym says what it stands for
DIGEST_HEX_CHARS = 16  # 64 bits: collisions are negligible for any institution's number of patients


class PseudonymKeyError(ValueError):
    """The pseudonymisation key is missing, empty, too short or unreadable."""


def _parse_key(text: bytes, source: str) -> bytes:
    """Hex text (as written by ``create_key_file``) decodes to bytes; anything else is used as given."""
    stripped = text.strip()
    candidate = stripped.decode("ascii", errors="replace")
    if len(candidate) % 2 == 0 and candidate and all(char in string.hexdigits for char in candidate):
        key = bytes.fromhex(candidate)
    else:
        key = stripped
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"the pseudonym key from {source} has {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            f"(e.g. {2 * NEW_KEY_BYTES} hex characters from `python -c 'import secrets; print(secrets.token_hex())'`)"
        )
    return key


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms: ``p-`` + 16 hex characters for patients, ``s-`` + 16 for studies.

    Args:
        key: the secret key (at least 16 bytes). Keep it with the institution's data, never with shared outputs.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"the pseudonym key has {len(key)} bytes; use at least {MIN_KEY_BYTES}")
        self._key = bytes(key)

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymizer(key_fingerprint={self.key_fingerprint!r})"

    @property
    def key_fingerprint(self) -> str:
        """A short hash of the key for provenance: tells whether two runs used the same key without revealing it."""
        return hashlib.sha256(b"medclip-key-fingerprint\0" + self._key).hexdigest()[:12]

    def pseudonym(self, value: str, kind: str = "patient") -> str:
        """The stable pseudonym of an identifier; ``kind`` separates namespaces so patient "7" != study "7"."""
        if kind not in PREFIXES:
            raise ValueError(f"unknown pseudonym kind {kind!r}; known: {', '.join(PREFIXES)}")
        message = f"{kind}\0{value}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return f"{PREFIXES[kind]}-{digest[:DIGEST_HEX_CHARS]}"

    @staticmethod
    def create_key_file(path: str | os.PathLike) -> Path:
        """Write a new random key (hex) to ``path`` with mode 0600, refusing to overwrite an existing key."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: two processes starting at once must not each write (and use) a different key.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(NEW_KEY_BYTES) + "\n")
        logger.warning(
            "created a new pseudonym key at %s (mode 0600). Back it up with the data: without it, pseudonyms of "
            "future runs will not match those of this run.",
            path,
        )
        return path

    @classmethod
    def from_key_file(cls, path: str | os.PathLike) -> Pseudonymizer:
        """Read a key file (hex text, or raw bytes); warns when other users can read it."""
        path = Path(path).expanduser()
        try:
            data = path.read_bytes()
        except OSError as error:
            raise PseudonymKeyError(f"cannot read the pseudonym key file {path}: {type(error).__name__}") from error
        if path.stat().st_mode & 0o077:
            logger.warning("the pseudonym key file %s is readable by other users; run `chmod 600 %s`", path, path)
        return cls(_parse_key(data, str(path)))

    @classmethod
    def from_environment(cls) -> Pseudonymizer:
        """The institution's key: ``$MEDCLIP_PSEUDONYM_KEY``, else ``$MEDCLIP_PSEUDONYM_KEY_FILE``, else
        ``~/.config/medclip/pseudonym.key`` (created with 32 random bytes on first use).

        A key file named by ``$MEDCLIP_PSEUDONYM_KEY_FILE`` must exist: silently creating a fresh key where the user
        expected theirs would break linkage with every earlier run.
        """
        if os.environ.get(KEY_ENV):
            return cls(_parse_key(os.environ[KEY_ENV].encode(), f"${KEY_ENV}"))
        if os.environ.get(KEY_FILE_ENV):
            path = Path(os.environ[KEY_FILE_ENV]).expanduser()
            if not path.exists():
                raise PseudonymKeyError(
                    f"${KEY_FILE_ENV} names {path}, which does not exist; create it with "
                    f"medclip.data.Pseudonymizer.create_key_file, or unset the variable to use {DEFAULT_KEY_FILE}"
                )
            return cls.from_key_file(path)
        path = DEFAULT_KEY_FILE.expanduser()
        if not path.exists():
            try:
                cls.create_key_file(path)
            except FileExistsError:  # another process created it between our check and our write: use theirs
                pass
        return cls.from_key_file(path)
