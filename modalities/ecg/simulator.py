"""A small 12-lead ECG simulator: P-QRS-T beats projected onto the lead axes, four rhythms, realistic noise.

Each wave of a beat (P, Q, R, S, T) is a Gaussian bump in time with a 3-D electrical direction (the heart's dipole
during that wave, as in vectorcardiography); lead ``l`` records the projection of each dipole on its axis. So the
limb leads obey Einthoven's law (III = II - I) and Goldberger's (aVR = -(I + II) / 2), V1 shows an rS complex and V6
a qR complex, and every lead of a beat is consistent with the others, as in a real recording.

Rhythms: sinus rhythm (60-100 bpm), sinus bradycardia (< 60), sinus tachycardia (> 100), and atrial fibrillation
(irregularly irregular RR intervals, no P waves, 4-9 Hz fibrillatory waves). On top: white noise, respiratory baseline
wander and 50/60 Hz mains hum, the artefacts real preprocessing has to remove. Axis and amplitude vary per record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .leads import STANDARD_LEADS

RHYTHMS = ("sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "atrial_fibrillation")
RATE_RANGES = {  # beats per minute drawn for each rhythm
    "sinus_rhythm": (62.0, 98.0),
    "sinus_bradycardia": (40.0, 56.0),
    "sinus_tachycardia": (105.0, 150.0),
    "atrial_fibrillation": (70.0, 150.0),
}


def _unit(vector: tuple[float, float, float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)


# Lead axes in body coordinates: x = patient's left, y = inferior, z = anterior.
_FRONTAL_DEGREES = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
_CHEST_DEGREES = {"V1": 115.0, "V2": 95.0, "V3": 75.0, "V4": 55.0, "V5": 30.0, "V6": 0.0}  # from left toward anterior
CHEST_GAIN = 1.5  # chest electrodes sit closer to the heart than limb electrodes
LEAD_AXES = np.stack(
    [
        _unit((math.cos(math.radians(_FRONTAL_DEGREES[lead])), math.sin(math.radians(_FRONTAL_DEGREES[lead])), 0.0))
        if lead in _FRONTAL_DEGREES
        else CHEST_GAIN
        * _unit((math.cos(math.radians(_CHEST_DEGREES[lead])), 0.0, math.sin(math.radians(_CHEST_DEGREES[lead]))))
        for lead in STANDARD_LEADS
    ]
)  # (12, 3)


@dataclass(frozen=True)
class Wave:
    """One wave of a beat: time from the R peak (s), Gaussian width (s), amplitude (mV), dipole direction."""

    offset_s: float
    width_s: float
    amplitude_mv: float
    direction: tuple[float, float, float]
    scales_with_rate: bool = False  # T waves move with the QT interval, which shortens as the rate rises


P_WAVE = Wave(-0.16, 0.022, 0.17, (0.6, 0.75, 0.2))
QRS_WAVES = (
    Wave(-0.03, 0.009, 0.15, (-0.6, 0.2, 0.75)),  # Q: septal activation, rightward and anterior
    Wave(0.0, 0.011, 1.2, (0.65, 0.6, -0.2)),  # R: left ventricular free wall
    Wave(0.032, 0.011, 0.4, (-0.5, -0.5, -0.7)),  # S: basal, rightward and posterior
)
T_WAVE = Wave(0.3, 0.06, 0.32, (0.6, 0.6, 0.3), scales_with_rate=True)


@dataclass
class SimulatedECG:
    """A simulated record and the values a report would state.

    Attributes:
        signal: (12, T) float64 millivolts in the standard lead order.
        sampling_rate: Hz.
        rhythm: one of ``RHYTHMS``.
        heart_rate: mean ventricular rate over the record (bpm), measured from its RR intervals.
        pr_ms, qrs_ms, qt_ms, qtc_ms: intervals in milliseconds (PR is None in atrial fibrillation).
        mains_hz: the simulated mains hum frequency (50 or 60).
    """

    signal: np.ndarray
    sampling_rate: float
    rhythm: str
    heart_rate: float
    pr_ms: int | None
    qrs_ms: int
    qt_ms: int
    qtc_ms: int
    mains_hz: float


def _rotation_z(degrees: float) -> np.ndarray:
    """Rotation in the frontal plane (about the antero-posterior axis): shifts the electrical axis."""
    angle = math.radians(degrees)
    return np.array([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0, 0, 1.0]])


def beat_times(rhythm: str, rate_bpm: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """R-peak times (s) covering [-1, seconds + 1]: near-regular with respiratory variation for sinus rhythms,
    irregularly irregular (independent RR intervals) for atrial fibrillation."""
    mean_rr = 60.0 / rate_bpm
    times = [-rng.uniform(0.0, mean_rr)]
    breathing = rng.uniform(0.2, 0.33)  # Hz
    while times[-1] < seconds + 1.0:
        if rhythm == "atrial_fibrillation":
            rr = mean_rr * rng.uniform(0.6, 1.4)
        else:
            rr = mean_rr * (1.0 + 0.04 * math.sin(2 * math.pi * breathing * times[-1]) + 0.01 * rng.standard_normal())
        times.append(times[-1] + rr)
    return np.asarray(times)


def _wave_train(time: np.ndarray, beats: np.ndarray, wave: Wave, rr: float, amplitudes: np.ndarray) -> np.ndarray:
    """(T,) sum over beats of one wave's Gaussian, with per-beat amplitude."""
    scale = math.sqrt(rr) if wave.scales_with_rate else 1.0  # Bazett: QT grows with the square root of RR
    centres = beats + wave.offset_s * scale  # (K,)
    width = wave.width_s * scale
    bumps = np.exp(-0.5 * ((time[None, :] - centres[:, None]) / width) ** 2)  # (K, T)
    return (amplitudes[:, None] * bumps).sum(axis=0)


def simulate_ecg(
    rhythm: str,
    rate_bpm: float,
    rng: np.random.Generator,
    sampling_rate: float = 500.0,
    seconds: float = 10.0,
    mains_hz: float | None = None,
) -> SimulatedECG:
    """One 12-lead record of ``rhythm`` at about ``rate_bpm``."""
    if rhythm not in RHYTHMS:
        raise ValueError(f"unknown rhythm {rhythm!r}; choose one of {RHYTHMS}")
    length = round(seconds * sampling_rate)
    time = np.arange(length) / sampling_rate  # (T,)
    beats = beat_times(rhythm, rate_bpm, seconds, rng)  # (K,)
    rr = float(np.mean(np.diff(beats)))
    rotation = _rotation_z(rng.normal(0.0, 15.0))  # per-patient electrical axis
    gain = rng.uniform(0.7, 1.3)  # per-patient amplitude (body habitus)
    waves = list(QRS_WAVES) + [T_WAVE] + ([] if rhythm == "atrial_fibrillation" else [P_WAVE])
    signal = np.zeros((len(STANDARD_LEADS), length))  # (12, T)
    for wave in waves:
        amplitudes = gain * wave.amplitude_mv * rng.uniform(0.93, 1.07, size=beats.size)  # (K,) beat-to-beat variation
        course = _wave_train(time, beats, wave, rr, amplitudes)  # (T,)
        projection = LEAD_AXES @ (rotation @ _unit(wave.direction))  # (12,)
        signal += projection[:, None] * course[None, :]
    if rhythm == "atrial_fibrillation":  # fibrillatory waves, strongest in V1 and the inferior leads
        frequency = rng.uniform(4.5, 8.5) + 0.5 * np.sin(2 * np.pi * 0.3 * time)  # (T,) wandering rate
        f_waves = rng.uniform(0.04, 0.1) * np.sin(2 * np.pi * np.cumsum(frequency) / sampling_rate)  # (T,)
        signal += (LEAD_AXES @ _unit((-0.3, 0.5, 0.8)))[:, None] * f_waves[None, :]
    # Artefacts: white noise, respiratory baseline wander, mains hum.
    signal += rng.normal(0.0, rng.uniform(0.005, 0.025), size=signal.shape)
    wander_phase = rng.uniform(0, 2 * np.pi, size=(signal.shape[0], 1))  # (12, 1)
    signal += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(0.12, 0.4) * time[None, :] + wander_phase)
    mains = float(mains_hz if mains_hz is not None else rng.choice([50.0, 60.0]))
    signal += rng.uniform(0.01, 0.05) * np.sin(2 * np.pi * mains * time + rng.uniform(0, 2 * np.pi))[None, :]
    heart_rate = 60.0 / rr
    qt_ms = round(1000 * (T_WAVE.offset_s * math.sqrt(rr) + 2 * T_WAVE.width_s * math.sqrt(rr) + 0.04))
    return SimulatedECG(
        signal=signal,
        sampling_rate=sampling_rate,
        rhythm=rhythm,
        heart_rate=heart_rate,
        pr_ms=None if rhythm == "atrial_fibrillation" else round(1000 * (abs(P_WAVE.offset_s) - 0.03 + 0.02)),
        qrs_ms=round(1000 * (QRS_WAVES[2].offset_s - QRS_WAVES[0].offset_s + 0.03)),
        qt_ms=qt_ms,
        qtc_ms=round(qt_ms / math.sqrt(rr)),
        mains_hz=mains,
    )
