"""DICOM radiographs and photographs through the image plugin, against pydicom's own pixel handling.

Every file is written with pydicom from real pixels (pydicom's and scikit-image's bundled images) with the tags a
CR/DX/MG/OP export carries, then read back through ``ImageModality.load``.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

import medclip
from medclip.types import ModalityError
from modalities.image.dicom_write import image_dataset, write_dicom_image
from tests.modalities.image.sources import pydicom_8bit, pydicom_ct_stored, skimage_gray, skimage_retina, twelve_bit

IDENTIFIERS = {"PatientName": "Doe^Jane^Radiograph", "PatientID": "MRN0042917", "AccessionNumber": "ACC77331"}


def plugin(**options):
    return medclip.get_modality("image", options)


def load(path, **options) -> tuple[np.ndarray, dict]:
    sample = plugin(**options).load(path)
    return np.asarray(sample["image"]), sample["image_meta"]


def pydicom_display(path) -> np.ndarray:
    """pydicom's modality LUT + VOI LUT/window, rescaled from its output range to [0, 1] (no inversion)."""
    dataset = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return values / (2**bits - 1)
    if dataset.get("ModalityLUTSequence"):
        low, high = 0, 2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    elif dataset.PixelRepresentation == 0:
        low, high = 0, 2**dataset.BitsStored - 1
    else:
        low, high = -(2 ** (dataset.BitsStored - 1)), 2 ** (dataset.BitsStored - 1) - 1
    if "RescaleSlope" in dataset and "RescaleIntercept" in dataset:
        low = low * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
        high = high * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    return (values - low) / (high - low)


def voi_lut_item(count: int, first: int, bits: int, entries: np.ndarray, vr: str = "US") -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [count, first, bits])
    data = entries.astype("<u2").tobytes() if vr == "OW" else [int(value) for value in entries]
    item.add_new(0x00283006, vr, data)
    return item


CASES = {
    # CR, MONOCHROME1, 12 of 16 bits, a LINEAR window narrower than the data (clipping at both ends)
    "cr_monochrome1_linear": lambda: image_dataset(
        twelve_bit(pydicom_8bit()),
        "CR",
        photometric="MONOCHROME1",
        bits_stored=12,
        spacing=(0.139, 0.139),
        tags={"WindowCenter": "2000", "WindowWidth": "3000"},
    ),
    # DX, MONOCHROME2, rescale slope/intercept, LINEAR_EXACT, two alternative windows
    "dx_rescale_linear_exact": lambda: image_dataset(
        twelve_bit(skimage_gray("camera")),
        "DX",
        bits_stored=12,
        spacing=(0.15, 0.15),
        spacing_tag="PixelSpacing",
        tags={
            "RescaleSlope": "0.5",
            "RescaleIntercept": "-100",
            "VOILUTFunction": "LINEAR_EXACT",
            "WindowCenter": ["900", "500"],
            "WindowWidth": ["1400", "600"],
        },
    ),
    # MG, SIGMOID window, ImagerPixelSpacing
    "mg_sigmoid": lambda: image_dataset(
        twelve_bit(skimage_gray("moon")),
        "MG",
        bits_stored=12,
        spacing=(0.07, 0.07),
        tags={"VOILUTFunction": "SIGMOID", "WindowCenter": "2048", "WindowWidth": "2500"},
    ),
    # DX with a VOI LUT Sequence (US entries, 10-bit output, a first mapped value inside the data range)
    "dx_voi_lut_us": lambda: image_dataset(
        twelve_bit(skimage_gray("coins")),
        "DX",
        bits_stored=12,
        tags={"VOILUTSequence": [voi_lut_item(2048, 800, 10, np.sqrt(np.arange(2048) / 2047) * 1023)]},
    ),
    # CR with an OW VOI LUT (16-bit entries) and MONOCHROME1
    "cr_voi_lut_ow_monochrome1": lambda: image_dataset(
        twelve_bit(pydicom_8bit()),
        "CR",
        photometric="MONOCHROME1",
        bits_stored=12,
        tags={"VOILUTSequence": [voi_lut_item(4096, 0, 16, np.arange(4096) * 16, vr="OW")]},
    ),
    # signed 16-bit stored values (pydicom's CT_small) with slope and intercept, as some DX exports store them
    "dx_signed_rescaled": lambda: image_dataset(
        pydicom_ct_stored(),
        "DX",
        tags={"RescaleSlope": "2", "RescaleIntercept": "-1000", "WindowCenter": "1500", "WindowWidth": "2000"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_display_equals_pydicoms_modality_and_voi_lut(tmp_path, case):
    dataset = CASES[case]()
    path = write_dicom_image(tmp_path / "image.dcm", dataset)
    image, meta = load(path)
    expected = pydicom_display(path)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        expected = 1.0 - expected
    assert image.shape == (1, *expected.shape) and image.dtype == np.float32
    np.testing.assert_allclose(image[0], expected, atol=2e-5)
    assert meta["inverted"] == (dataset.PhotometricInterpretation == "MONOCHROME1")
    assert meta["voi"] == ("voi_lut" if "VOILUTSequence" in dataset else "window")
    assert meta["dicom_modality"] == dataset.Modality


def test_second_window_is_picked_by_voi_index(tmp_path):
    path = write_dicom_image(tmp_path / "dx.dcm", CASES["dx_rescale_linear_exact"]())
    first, _ = load(path)
    second, _ = load(path, voi_index=1)
    values = pydicom_display(path)  # pydicom's index 0
    np.testing.assert_allclose(first[0], values, atol=2e-5)
    assert not np.allclose(first, second)
    with pytest.raises(ModalityError) as error:
        load(path, voi_index=2)
    assert error.value.reason == "voi_index_out_of_range"


def test_monochrome1_is_inverted_so_bone_is_bright(tmp_path):
    """The same anatomy stored as MONOCHROME2 and as MONOCHROME1 (stored values reversed) displays the same."""
    stored = twelve_bit(skimage_gray("camera"))
    window = {"WindowCenter": "2040", "WindowWidth": "4080", "VOILUTFunction": "LINEAR_EXACT"}  # symmetric about 2040
    normal = write_dicom_image(tmp_path / "m2.dcm", image_dataset(stored, "CR", bits_stored=12, tags=window))
    reversed_ = image_dataset(4080 - stored, "CR", photometric="MONOCHROME1", bits_stored=12, tags=window)
    inverted = write_dicom_image(tmp_path / "m1.dcm", reversed_)
    a, meta_a = load(normal)
    b, meta_b = load(inverted)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not meta_a["inverted"] and meta_b["inverted"]
    # and it is the camera image itself: brighter where the camera image is brighter
    assert np.corrcoef(a[0].ravel(), skimage_gray("camera").ravel())[0, 1] > 0.99


def test_presentation_lut_inverse_inverts_once(tmp_path):
    stored = twelve_bit(skimage_gray("camera"))
    plain = write_dicom_image(tmp_path / "a.dcm", image_dataset(stored, "DX", bits_stored=12))
    inverse = image_dataset(stored, "DX", bits_stored=12, tags={"PresentationLUTShape": "INVERSE"})
    both = image_dataset(4080 - stored, "DX", photometric="MONOCHROME1", bits_stored=12)
    both.PresentationLUTShape = "INVERSE"  # DX: INVERSE accompanies MONOCHROME1; it is the same single inversion
    a, _ = load(plain)
    b, _ = load(write_dicom_image(tmp_path / "b.dcm", inverse))
    c, _ = load(write_dicom_image(tmp_path / "c.dcm", both))
    np.testing.assert_allclose(b, 1.0 - a, atol=1e-6)
    np.testing.assert_allclose(c, a, atol=1e-6)


def test_without_voi_the_image_range_is_used(tmp_path):
    stored = twelve_bit(pydicom_8bit())
    path = write_dicom_image(tmp_path / "cr.dcm", image_dataset(stored, "CR", bits_stored=12))
    image, meta = load(path)
    values = stored.astype(np.float64)
    np.testing.assert_allclose(image[0], (values - values.min()) / (values.max() - values.min()), atol=1e-6)
    assert meta["voi"] == "image_range"


def test_modality_lut_sequence_goes_through_pydicom(tmp_path):
    stored = twelve_bit(skimage_gray("moon"))
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])
    item.add_new(0x00283006, "US", [int(v) for v in np.sqrt(np.arange(4096) / 4095.0) * 65535])
    tags = {"ModalityLUTSequence": [item], "WindowCenter": "32768", "WindowWidth": "65536"}
    path = write_dicom_image(tmp_path / "mg.dcm", image_dataset(stored, "MG", bits_stored=12, tags=tags))
    image, _ = load(path)
    np.testing.assert_allclose(image[0], pydicom_display(path), atol=2e-5)


def test_pixel_spacing_and_imager_pixel_spacing_are_kept(tmp_path):
    stored = twelve_bit(pydicom_8bit())
    imager = image_dataset(stored, "CR", bits_stored=12, spacing=(0.139, 0.14))
    _, meta = load(write_dicom_image(tmp_path / "a.dcm", imager))
    assert meta["spacing"] == [0.139, 0.14] and meta["spacing_source"] == "ImagerPixelSpacing"
    both = image_dataset(stored, "CR", bits_stored=12, spacing=(0.139, 0.139))
    both.PixelSpacing = ["0.125", "0.125"]  # calibrated at the patient: preferred
    _, meta = load(write_dicom_image(tmp_path / "b.dcm", both))
    assert meta["spacing"] == [0.125, 0.125] and meta["spacing_source"] == "PixelSpacing"
    _, meta = load(write_dicom_image(tmp_path / "c.dcm", image_dataset(stored, "CR", bits_stored=12)))
    assert meta["spacing"] is None and meta["spacing_source"] == "none" and not meta["spacing_known"]


def test_ophthalmic_photograph_reads_as_rgb(tmp_path):
    retina = skimage_retina()
    path = write_dicom_image(tmp_path / "op.dcm", image_dataset(retina, "OP", tags={"ImageLaterality": "R"}))
    image, meta = load(path, image_type="rgb")
    np.testing.assert_allclose(image, np.moveaxis(retina, -1, 0) / 255.0, atol=1e-6)
    assert meta["color"] == "rgb" and meta["laterality"] == "R"
    with pytest.raises(ModalityError) as error:
        load(path)  # grayscale by default: a colour photograph is refused, not mixed down
    assert error.value.reason == "not_grayscale"


def test_grayscale_radiograph_becomes_three_equal_channels_for_rgb(tmp_path):
    path = write_dicom_image(tmp_path / "cr.dcm", CASES["cr_monochrome1_linear"]())
    gray, _ = load(path)
    rgb, _ = load(path, image_type="rgb")
    assert rgb.shape[0] == 3 and all(np.array_equal(channel, gray[0]) for channel in rgb)


def test_compressed_real_pixel_data_decodes_like_pydicom(tmp_path):
    """pydicom's JPEG 2000 test file (real 16-bit NM data) relabelled as DX: the decoder path, same pixels."""
    from pydicom.data import get_testdata_file

    from modalities.volume.dicom_codecs import check_decodable

    dataset = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    try:
        check_decodable(dataset)
    except ModalityError:
        pytest.skip("no JPEG 2000 decoder installed (pip install pylibjpeg pylibjpeg-openjpeg)")
    dataset.Modality = "DX"
    path = tmp_path / "j2k.dcm"
    dataset.save_as(path)
    image, meta = load(path)
    values = dataset.pixel_array.astype(np.float64)
    if "RescaleSlope" in dataset:
        values = values * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    np.testing.assert_allclose(image[0], (values - values.min()) / (values.max() - values.min()), atol=1e-5)
    assert "JPEG 2000" in meta["transfer_syntax"]


def test_identifiers_never_leave_the_reader(tmp_path, caplog):
    dataset = CASES["cr_monochrome1_linear"]()
    for keyword, value in IDENTIFIERS.items():
        setattr(dataset, keyword, value)
    dataset.StudyDescription = "CHEST Doe Jane follow-up"
    dataset.ViewPosition = "Doe^Jane"  # free text where a code belongs: stored as "other"
    path = write_dicom_image(tmp_path / "MRN0042917_Doe_Jane.dcm", dataset)
    bad = CASES["cr_monochrome1_linear"]()
    bad.PatientName = "Doe^Jane"
    bad.BurnedInAnnotation = "YES"
    bad_path = write_dicom_image(tmp_path / "Doe_Jane.dcm", bad)
    caplog.clear()  # writing warned about the planted value; reading must not
    caplog.set_level(logging.DEBUG)
    _, meta = load(path)
    text = json.dumps(meta)
    for value in (*IDENTIFIERS.values(), "Doe", "MRN0042917", str(dataset.StudyInstanceUID)):
        assert value not in text
    assert meta["view_position"] == "other"
    assert meta["study_pseudonym"].startswith("s-")
    with pytest.raises(ModalityError) as error:
        load(bad_path)
    assert "Doe" not in str(error.value) and "Doe" not in caplog.text and "MRN" not in caplog.text
    for keyword in ("Modality", "PhotometricInterpretation"):  # header text in a coded field is never echoed
        odd = CASES["cr_monochrome1_linear"]()
        setattr(odd, keyword, "DOE JANE")
        with pytest.raises(ModalityError) as error:
            load(write_dicom_image(tmp_path / f"{keyword}.dcm", odd))
        assert "DOE" not in str(error.value)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"BurnedInAnnotation": "YES"}, "quarantined_burned_in_annotation"),
        ({"Modality": "SC"}, "quarantined_modality"),
        ({"Modality": "US"}, "quarantined_modality"),
        ({"Modality": "CT"}, "unsupported_dicom_modality"),
        ({"PresentationIntentType": "FOR PROCESSING"}, "for_processing"),
        ({"NumberOfFrames": "2"}, "multiframe"),
        ({"PhotometricInterpretation": "PALETTE COLOR"}, "palette_image"),
        ({"PhotometricInterpretation": "YBR_FULL"}, "unsupported_photometric"),
        ({"HighBit": 15}, "bad_header"),
        ({"WindowCenter": "2000", "WindowWidth": "0"}, "bad_window"),
        ({"WindowCenter": "2000", "WindowWidth": "100", "VOILUTFunction": "CUBIC"}, "bad_window"),
        ({"PixelSpacing": ["0", "0.1"]}, "bad_header"),
    ],
)
def test_refusals_name_their_reason(tmp_path, change, reason):
    dataset = image_dataset(twelve_bit(pydicom_8bit()), "CR", bits_stored=12)
    for keyword, value in change.items():
        setattr(dataset, keyword, value)
    with pytest.raises(ModalityError) as error:
        load(write_dicom_image(tmp_path / "x.dcm", dataset))
    assert error.value.reason == reason


def test_quarantine_off_reads_screened_images(tmp_path):
    dataset = image_dataset(twelve_bit(pydicom_8bit()), "CR", bits_stored=12, tags={"BurnedInAnnotation": "YES"})
    path = write_dicom_image(tmp_path / "x.dcm", dataset)
    image, _ = load(path, quarantine=False)
    assert image.shape == (1, 512, 512)


def test_values_above_bits_stored_are_refused_not_masked(tmp_path):
    """pydicom masks the bits above BitsStored (5000 in 12 bits reads as 904): the reader refuses instead."""
    stored = twelve_bit(pydicom_8bit())
    stored[0, :8] = 5000
    dataset = image_dataset(stored, "DX", bits_stored=12)
    path = write_dicom_image(tmp_path / "x.dcm", dataset)
    assert pydicom.dcmread(path).pixel_array[0, 0] == 5000 & 0x0FFF  # what pydicom would have given
    with pytest.raises(ModalityError) as error:
        load(path)
    assert error.value.reason == "values_exceed_bits_stored"
    signed = image_dataset(pydicom_ct_stored(), "DX", bits_stored=12)  # CT_small holds values up to 2191 > 2047
    with pytest.raises(ModalityError) as error:
        load(write_dicom_image(tmp_path / "s.dcm", signed))
    assert error.value.reason == "values_exceed_bits_stored"


def test_file_without_suffix_is_recognised_by_its_preamble(tmp_path):
    path = write_dicom_image(tmp_path / "IM000001", CASES["mg_sigmoid"]())
    image, meta = load(path)
    assert image.shape == (1, 512, 512) and meta["source"] == "dicom"


def test_uncompressed_ybr_full_422_photograph_is_not_mistaken_for_a_truncated_one(tmp_path):
    """Native YBR_FULL_422 stores two luma and one chroma pair per two pixels: 2 bytes per pixel, not 3."""
    from pydicom.pixels import convert_color_space

    retina = skimage_retina()[:, :352]  # an even width
    ybr = convert_color_space(retina, "RGB", "YBR_FULL").astype(np.int32)  # (H, W, 3)
    pairs = ybr.reshape(ybr.shape[0], -1, 2, 3)  # (H, W/2, 2 pixels, Y/Cb/Cr)
    packed = np.stack(
        [pairs[..., 0, 0], pairs[..., 1, 0], pairs[..., :, 1].mean(-1).round(), pairs[..., :, 2].mean(-1).round()],
        axis=-1,
    ).astype(np.uint8)  # (H, W/2, 4): Y0 Y1 Cb Cr
    dataset = image_dataset(retina, "OP", photometric="YBR_FULL_422")
    dataset.PixelData = packed.tobytes()
    image, meta = load(write_dicom_image(tmp_path / "op.dcm", dataset), image_type="rgb")
    assert meta["photometric_interpretation"] == "YBR_FULL_422"
    assert float(np.abs(image - np.moveaxis(retina, -1, 0) / 255.0).mean()) < 0.02  # chroma subsampling error only
