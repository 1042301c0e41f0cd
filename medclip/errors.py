"""``MedclipError``: the mark of an error that describes the user's data, config or files, not a bug.

The command line prints such errors as one line (``medclip: error: ...``, with their reason code where they have
one) instead of a traceback; ``--verbose`` shows the traceback for bug reports. Errors that already derive from
``ValueError`` or ``FileNotFoundError`` (config, manifest, checkpoint, modality errors) are treated the same way.
"""

from __future__ import annotations


class MedclipError(Exception):
    """A problem with the user's input that the message explains (never patient data in it)."""
