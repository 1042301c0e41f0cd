"""``VolumeLimits`` and the resampling budget (issue 14): sizes are checked from headers and planned grids before
anything is allocated; values after conversion; messages never quote what a file holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medclip.types import ModalityError
from modalities.volume.geometry import reorient
from modalities.volume.limits import VolumeLimits
from modalities.volume.pipeline import VolumePreprocessing
from modalities.volume.preprocess import GeometrySpec, ResizeSpec, resample
from tests.helpers import refusal

LIMITS = VolumeLimits(max_decoded_mb=1.0, spacing_mm=(0.01, 25.0), values=(-1024.0, 3071.0), values_name="HU")


def test_shape_budget_empty_axes_and_negative_sizes():
    LIMITS.check_shape((64, 64, 64))  # 1 MiB of float32: exactly the budget
    assert refusal(lambda: LIMITS.check_shape((64, 64, 65))) == "too_large"
    assert refusal(lambda: LIMITS.check_shape((64, 64, 40), itemsize=8)) == "too_large"  # float64 counts double
    assert refusal(lambda: LIMITS.check_shape((10**9, 10**9, 10**9))) == "too_large"  # Python ints: no overflow
    assert refusal(lambda: LIMITS.check_shape((8, 0, 8))) == "empty_volume"
    assert refusal(lambda: LIMITS.check_shape((8, -8, 8))) == "bad_header"


@pytest.mark.parametrize(
    "dtype,expected",
    [
        (np.complex64, "complex_data"),
        (np.dtype([("Doe_Jane", "f4")]), "unsupported_dtype"),
        (bool, "unsupported_dtype"),
    ],
)
def test_only_real_numbers_and_the_message_quotes_no_field_name(dtype, expected):
    with pytest.raises(ModalityError) as raised:
        LIMITS.check_dtype(np.dtype(dtype))
    assert raised.value.reason == expected and "Doe" not in str(raised.value)


@pytest.mark.parametrize(
    "spacing,expected",
    [
        ((1.0, 1.0, math.nan), "bad_affine"),
        ((1.0, math.inf, 1.0), "bad_affine"),
        ((1.0, 0.0, 1.0), "bad_affine"),
        ((90.0, 90.0, 90.0), "implausible_spacing"),
        ((1e-7, 1.0, 1.0), "implausible_spacing"),
    ],
)
def test_spacing_is_finite_positive_and_plausible(spacing, expected):
    LIMITS.check_spacing((0.01, 1.0, 25.0))  # the range's ends are plausible
    assert refusal(lambda: LIMITS.check_spacing(spacing)) == expected


def test_values_are_finite_and_plausible_after_conversion():
    LIMITS.check_values(np.array([[[-1024, 3071]]], dtype=np.int16))
    assert refusal(lambda: LIMITS.check_values(np.array([[[0.0, np.nan]]], np.float32))) == "non_finite"
    assert refusal(lambda: LIMITS.check_values(np.array([[[0.0, -np.inf]]], np.float32))) == "non_finite"
    assert refusal(lambda: LIMITS.check_values(np.array([[[0.0, 1e30]]], np.float32))) == "implausible_values"
    assert refusal(lambda: LIMITS.check_values(np.array([[[0, 2**40]]], np.int64))) == "implausible_values"
    assert refusal(lambda: LIMITS.check_values(np.ones((2, 2, 2), np.complex64))) == "complex_data"
    with pytest.raises(ModalityError) as raised:
        LIMITS.check_values(np.array([[[123456.0]]], np.float32))
    assert "123456" not in str(raised.value)  # the limits are named, never the value read


ORIENTED_AFFINES = {
    "RAS": np.diag([0.7, 0.8, 2.5, 1.0]),
    "LPS": np.diag([-0.7, -0.8, 2.5, 1.0]),
    "PIR": np.array([[0, 0, 1.5, 0], [-0.9, 0, 0, 0], [0, -1.1, 0, 0], [0, 0, 0, 1.0]]),
}


@pytest.mark.parametrize("name", sorted(ORIENTED_AFFINES))
@pytest.mark.parametrize("target", ["RAS", "LPI", "ASR"])
@pytest.mark.parametrize("spacing", [(3.0, 3.0, 3.0), (0.5, 2.0, 0.0), (1.0, 0.25, 7.0)])
def test_planned_shape_is_the_grid_resampling_allocates(name, target, spacing):
    affine = ORIENTED_AFFINES[name]
    array = np.zeros((13, 17, 9), dtype=np.float32)
    spec = GeometrySpec(orientation=target, spacing=spacing, size=(4, 4, 4), pad_value=0.0)
    oriented, oriented_affine = reorient(array, affine, target)
    resampled, _ = resample(oriented, oriented_affine, spacing)
    assert spec.planned_shape(array.shape, affine) == resampled.shape
    assert ResizeSpec((5, 6, 7)).planned_shape(array.shape, affine) == (5, 6, 7)


def test_preprocessing_refuses_a_resampled_grid_over_the_budget_before_resampling():
    array = np.zeros((8, 8, 8), dtype=np.int16)  # 10 mm voxels
    affine = np.diag([10.0, 10.0, 10.0, 1.0])
    geometry = GeometrySpec(orientation="RAS", spacing=(1.0, 1.0, 1.0), size=(8, 8, 8), pad_value=0.0)
    store = lambda values: values.astype(np.float16)  # noqa: E731
    tight = VolumePreprocessing(geometry=geometry, store=store, max_decoded_mb=1.0)  # 80^3 float32 = 1.95 MiB
    assert refusal(lambda: tight(array, affine)) == "too_large"
    roomy = VolumePreprocessing(geometry=geometry, store=store, max_decoded_mb=2.0)
    output, _ = roomy(array, affine)
    assert output.shape == (8, 8, 8)
    assert tight.fingerprint() == roomy.fingerprint()  # the budget decides what is refused, not the output


def test_absurd_voxel_sizes_give_an_absurd_planned_grid_not_an_overflow():
    affine = np.diag([1e150, 1.0, 1.0, 1.0])
    for target, smallest in ((1e-100, 8 * 10**249), (1e-200, 2**62)):  # a finite count, and one past float range
        geometry = GeometrySpec(orientation="RAS", spacing=(target, 1.0, 1.0), size=(8, 8, 8), pad_value=0.0)
        planned = geometry.planned_shape((8, 8, 8), affine)
        assert planned[0] >= smallest and planned[1:] == (8, 8)
        preprocessing = VolumePreprocessing(geometry=geometry, store=lambda values: values)
        assert refusal(lambda: preprocessing(np.zeros((8, 8, 8)), affine)) == "too_large"  # noqa: B023
