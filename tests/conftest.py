"""Test-wide settings: offline model hubs, a throw-away pseudonym key, small thread pools."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A fixed test key: pseudonyms are stable within the suite and no key file is written to the user's home.
os.environ.setdefault("MEDCLIP_PSEUDONYM_KEY", "medclip-test-suite-key")

import torch  # noqa: E402

torch.set_num_threads(2)
