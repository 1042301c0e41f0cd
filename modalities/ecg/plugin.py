"""``ECGModality``: 12-lead (or fewer-lead) ECG recordings from WFDB, DICOM waveform, EDF, CSV and NumPy files.

Pipeline: ``resolve`` (manifest cell -> path + what the cell says: ``rec.csv#fs=500&units=uV``) -> ``load`` (read with
the format's reader, pick/order leads, millivolts, notch, resample, band-pass; cached as memory-mapped arrays when
``cache_dir`` is set) -> ``transforms`` (crop/pad, per-lead normalisation, augmentation) -> ``collate`` -> encoder
(``resnet1d`` or ``vit1d``: pooled vector + time tokens).

Metadata is allow-listed (``preprocess.META_KEYS``: format, sampling rates, leads present, duration, units); nothing
from WFDB header comments, DICOM patient/study tags or EDF patient fields is ever read into a sample, cache entry,
log line or error message.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import torch
from torch import nn

from medclip.data.safe_io import MEGABYTE
from medclip.explain.signal import SignalLayout
from medclip.types import Modality, ModalityError, Sample

from .cache import ECGCache, content_hash
from .config import ECGConfig
from .encoders import build_ecg_encoder
from .preprocess import check_duration, preprocess, preprocessing_fingerprint
from .readers import ReadOptions, reader_for
from .synthetic import synthetic_samples
from .transform import ECGTransform
from .units import MILLIVOLTS, millivolt_factor

STATE_FORMAT = "medclip.ecg/1"
CELL_OPTIONS = {"fs": "sampling_rate", "sampling_rate": "sampling_rate", "units": "units"}


def parse_cell_options(fragment: str) -> dict[str, Any]:
    """``"fs=500&units=uV"`` -> {"sampling_rate": 500.0, "units": "uV"}.

    Raises:
        ModalityError: ``bad_reference`` for an unknown option or a sampling rate that is not a positive number.
    """
    options: dict[str, Any] = {}
    for key, value in parse_qsl(fragment, keep_blank_values=True):
        if key not in CELL_OPTIONS:  # the cell's text is not quoted: it may hold anything
            raise ModalityError("bad_reference", "unknown ECG cell option; use #fs=<Hz> and/or #units=<mV|uV|V>")
        if CELL_OPTIONS[key] == "sampling_rate":
            try:
                rate = float(value)
            except ValueError:
                rate = float("nan")
            if not math.isfinite(rate) or rate <= 0:
                raise ModalityError("bad_reference", "the cell's fs= option must be a positive number of Hz")
            options["sampling_rate"] = rate
        else:
            millivolt_factor(value)  # unknown_units now rather than at load
            options["units"] = value
    return options


class ECGModality(Modality):
    """Electrocardiograms (see the module docstring)."""

    name = "ecg"
    config_class = ECGConfig
    fits_on_data = False
    file_suffixes = (".hea", ".dat", ".edf")  # .dcm, .csv and .npy are shared with other data: use --modality ecg

    def __init__(self, config: ECGConfig | None = None) -> None:
        super().__init__(config)
        self.config: ECGConfig
        self._cache: ECGCache | None = None

    # --- manifest cell -> reference -> sample ------------------------------------------------------------------------
    def resolve(self, value: str, root: str | os.PathLike) -> Path | Mapping[str, Any]:
        """A path (a WFDB record name without suffix means its ``.hea``), plus any ``#fs=..&units=..`` options."""
        text, _, fragment = str(value).strip().partition("#")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path(root) / path
        if not path.suffix:
            path = path.with_suffix(".hea")
        if not fragment:
            return path
        return {"path": str(path), **parse_cell_options(fragment)}

    def _reference(self, ref: str | os.PathLike | Mapping[str, Any]) -> tuple[Path, ReadOptions]:
        if isinstance(ref, Mapping):
            unknown = set(ref) - {"path", "sampling_rate", "units"}
            if "path" not in ref or unknown:
                raise ModalityError(
                    "bad_reference", "an ECG reference mapping needs 'path' and at most 'sampling_rate' and 'units'"
                )
            rate = ref.get("sampling_rate")
            return Path(ref["path"]), ReadOptions(None if rate is None else float(rate), ref.get("units"))
        text = os.fspath(ref)
        if "#" in text:
            resolved = self.resolve(text, Path.cwd())
            if isinstance(resolved, Mapping):
                return self._reference(resolved)
            return resolved, ReadOptions()
        path = Path(text)
        return (path.with_suffix(".hea") if not path.suffix else path), ReadOptions()

    def _record_cache(self) -> ECGCache | None:
        if self.config.cache_dir and self._cache is None:
            self._cache = ECGCache(self.config.cache_dir, self.config)
        return self._cache if self.config.cache_dir else None

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """One record as (L, T) float32 millivolts at ``sampling_rate`` in the configured lead order.

        Raises:
            ModalityError: with a reason code (docs/ecg.md lists them): missing_file, not_regular_file, too_large,
                unsupported_format, unreadable, empty_file, not_utf8, not_numeric, wrong_dimensions,
                unsupported_dtype, complex_values, unsupported_sample_type, bad_header, bad_reference, bad_sidecar,
                header_data_mismatch, non_finite, implausible_amplitude, too_short, missing_sampling_rate,
                implausible_sampling_rate, conflicting_sampling_rate, conflicting_units, unknown_units,
                duplicate_lead, no_known_leads, missing_leads, mixed_sampling_rates, not_an_ecg.
        """
        path, options = self._reference(ref)
        options = replace(options, limits=self.config.limits, lead_aliases=tuple(self.config.lead_aliases.items()))
        reader = reader_for(path)
        cache = self._record_cache()
        key = None
        if cache is not None:
            try:
                digest = content_hash(path, reader, int(self.config.max_decoded_mb * MEGABYTE))
            except FileNotFoundError:
                raise ModalityError("missing_file", f"{reader.name} record file does not exist") from None
            except OSError as error:
                raise ModalityError(
                    "unreadable", f"{reader.name} record could not be read ({type(error).__name__})"
                ) from None
            if options.sampling_rate is not None or options.units is not None:  # what the cell adds to the files
                digest = f"{digest}:{json.dumps([options.sampling_rate, options.units])}"
            key = cache.key(digest)
            hit = cache.get(key)
            if hit is not None:
                signal, meta = hit
                check_duration(meta["duration_s"], self.config)
                return {self.name: signal, f"{self.name}_meta": meta}
        signal, meta = preprocess(reader.read(path, options), self.config)
        if cache is not None:
            cache.put(key, signal, meta)
            stored = cache.get(key)  # serve what later epochs will read (float16/int16 precision), not the float32
            if stored is not None:
                signal, meta = stored
        return {self.name: signal, f"{self.name}_meta": meta}

    # --- preprocessing fingerprint ---------------------------------------------------------------------------------
    def preprocess_state(self) -> dict[str, Any]:
        """The config and the preprocessing fingerprint (lead order, sampling rate, filters, units)."""
        return {
            "format": STATE_FORMAT,
            "config": asdict(self.config),
            "fingerprint": preprocessing_fingerprint(self.config),
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Check that the saved fingerprint is what this (restored) config produces.

        Raises:
            ValueError: for another plugin's state or a fingerprint this code would not reproduce (e.g. a checkpoint
                from a pipeline version whose preprocessing differs).
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"ECG preprocess state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        if state.get("fingerprint") != preprocessing_fingerprint(self.config):
            raise ValueError(
                "ECG preprocess state: the saved preprocessing fingerprint differs from what these settings produce "
                f"(saved {state.get('fingerprint')}, now {preprocessing_fingerprint(self.config)})"
            )

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        """Refuse inputs preprocessed with another sampling rate, unit or lead set than this model's.

        Raises:
            ModalityError: ``preprocessing_mismatch``.
        """
        problems = []
        if sample_meta.get("sampling_rate") != self.config.sampling_rate:
            problems.append(f"sampling rate {sample_meta.get('sampling_rate')} Hz != {self.config.sampling_rate} Hz")
        if sample_meta.get("units") != MILLIVOLTS:
            problems.append(f"units {sample_meta.get('units')!r} != 'mV'")
        extra = sorted(set(sample_meta.get("leads_present", [])) - set(self.config.leads))
        if extra:
            problems.append(f"leads {extra} are not among the model's leads")
        if problems:
            raise ModalityError("preprocessing_mismatch", "ECG input does not match the model: " + "; ".join(problems))

    # --- tensors ---------------------------------------------------------------------------------------------------
    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """Crop/pad to ``seconds``, per-lead normalisation, augmentation when ``train`` (and ``cfg.augment``)."""
        cfg = self.config
        return ECGTransform(self.name, cfg, train)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """{"ecg": {"signal": (B, L, N), "lead_mask": (B, L), "valid_samples": (B,)}, "ecg_mask": (B,) bool}.

        Missing rows are zeros with no lead and no valid sample.
        """
        leads, length = len(self.config.leads), self.config.n_samples
        present = torch.tensor([sample.get(self.name) is not None for sample in samples], dtype=torch.bool)  # (B,)
        # Filled with NumPy (one memcpy per row, single-threaded): torch's per-row copies are slow on busy CPUs.
        signal = np.zeros((len(samples), leads, length), dtype=np.float32)  # (B, L, N)
        lead_mask = np.zeros((len(samples), leads), dtype=bool)  # (B, L)
        valid_samples = np.zeros(len(samples), dtype=np.int64)  # (B,)
        for row, sample in enumerate(samples):
            item = sample.get(self.name)
            if item is None:
                continue
            if not isinstance(item, Mapping):
                raise TypeError("ECG collate expects transformed samples: apply transforms() before collate()")
            if tuple(item["signal"].shape) != (leads, length):
                raise ValueError(f"ECG input must be ({leads}, {length}), got {tuple(item['signal'].shape)}")
            signal[row] = np.asarray(item["signal"])
            lead_mask[row] = np.asarray(item["lead_mask"])
            valid_samples[row] = int(item["valid_samples"])
        batch = {
            "signal": torch.from_numpy(signal),
            "lead_mask": torch.from_numpy(lead_mask),
            "valid_samples": torch.from_numpy(valid_samples),
        }
        return {self.name: batch, f"{self.name}_mask": present}

    def build_encoder(self) -> nn.Module:
        """The ``cfg.encoder`` encoder: batch["ecg"] -> pooled (B, width), time tokens (B, T', width)."""
        cfg = self.config
        return build_ecg_encoder(cfg)

    def token_layout(self, inputs: Mapping[str, torch.Tensor], token_count: int) -> SignalLayout:
        """Time tokens: one per ViT patch (``patch_seconds``), or per position of the ResNet's last feature map
        (every stage halves time); each covers all leads."""
        cfg = self.config
        signal = inputs["signal"][0].float().cpu().numpy()  # (L, N)
        if cfg.encoder == "vit1d":
            stride = cfg.patch_samples
        elif cfg.encoder == "resnet1d":
            stride = 2 ** (cfg.depth + 1)  # the stem and every stage halve time (ResNet1d.downsampling)
        else:  # another encoder: samples per token, from the token count
            stride = math.ceil(signal.shape[1] / max(token_count, 1))
        return SignalLayout(
            stride=int(stride),
            traces=signal,
            leads=list(cfg.leads),
            lead_present=inputs["lead_mask"][0].cpu().numpy().astype(bool),
            sampling_rate=float(cfg.sampling_rate),
            valid_samples=int(inputs["valid_samples"][0]),
        )

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` simulated 12-lead records (four rhythms), preprocessed as loaded files are."""
        return synthetic_samples(self.config, n, seed, name=self.name)
