"""The ``ct`` plugin: DICOM series and NIfTI loading (geometry, HU, reason-coded errors, no identifier leaks),
preprocessing and its cache, 3D encoders, the phantom data set, CT-report pretraining and ``medclip inspect``."""

from __future__ import annotations

import json
import logging
import os
import shutil

import nibabel as nib
import nibabel.testing
import numpy as np
import pydicom
import pytest
import torch
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut
from pydicom.uid import MPEG4HP41, JPEG2000Lossless, RLELossless, generate_uid

import medclip
from medclip import config
from medclip.types import ModalityError
from modalities.ct.phantom import write_nifti, write_phantom_dataset
from modalities.volume.dicom_write import write_dicom_series
from modalities.volume.encoders import build_volume_encoder, resolve_spec
from modalities.volume.geometry import LPS_TO_RAS
from modalities.volume.phantom import chest_phantom
from recipes.pretrain import Config as PretrainConfig
from tests.helpers import lps_affine

IDENTIFIERS = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "MRN98765432",
    "PatientBirthDate": "19610314",
    "StudyDate": "20230917",
    "AccessionNumber": "ACC55501234",
    "InstitutionName": "Saint Example Hospital",
}
STUDY_UID = "1.2.826.0.1.3680043.8.498.1234567890123"
SERIES_UID = "1.2.826.0.1.3680043.8.498.9876543210987"
SMALL = {"spacing": [4.0, 4.0, 5.0], "size": [16, 16, 16], "patch_size": [8, 8, 8]}


def planted_strings() -> list[str]:
    return [*IDENTIFIERS.values(), "Doe", "Jane", "98765432", STUDY_UID, SERIES_UID]


def assert_no_identifier(text: str) -> None:
    for secret in planted_strings():
        assert secret not in text, f"an identifier leaked: {secret}"


AXIAL = lps_affine([1, 0, 0], [0, 1, 0], (0.7, 0.8, 2.5), [-7.0, -6.4, -30.0])
SAGITTAL = lps_affine([0, 1, 0], [0, 0, -1], (0.9, 1.1, 2.0), [12.0, -8.0, 9.0])


@pytest.fixture(scope="module")
def hounsfield():
    rng = np.random.default_rng(7)
    return rng.integers(-1024, 1500, size=(20, 16, 12)).astype(np.int16)  # (I, J, K)


def write_series(folder, hounsfield, affine=AXIAL, **kwargs):
    options = {"identifiers": IDENTIFIERS, "study_uid": STUDY_UID, "shuffle_seed": 3, **kwargs}
    return write_dicom_series(folder, hounsfield, affine, **options)


def edit(path, change) -> None:
    dataset = pydicom.dcmread(path)
    change(dataset)
    dataset.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("affine", [AXIAL, SAGITTAL], ids=["axial", "sagittal"])
def test_shuffled_dicom_series_equals_nifti_and_pydicom(tmp_path, hounsfield, affine, caplog):
    caplog.set_level(logging.DEBUG)
    paths = write_series(tmp_path / "Doe_Jane_series", hounsfield, affine, series_uid=SERIES_UID)
    write_nifti(tmp_path / "scan.nii.gz", hounsfield, affine)
    plugin = medclip.get_modality("ct", SMALL)
    from_dicom = plugin.load(tmp_path / "Doe_Jane_series")
    from_nifti = plugin.load(tmp_path / "scan.nii.gz")
    assert from_dicom["ct"].dtype == np.int16
    assert np.array_equal(from_dicom["ct"], hounsfield) and np.array_equal(from_nifti["ct"], hounsfield)
    dicom_meta, nifti_meta = from_dicom["ct_meta"], from_nifti["ct_meta"]
    np.testing.assert_allclose(dicom_meta["affine"], affine, atol=1e-4)
    np.testing.assert_allclose(nifti_meta["affine"], affine, atol=1e-4)
    np.testing.assert_allclose(dicom_meta["spacing"], nifti_meta["spacing"], atol=1e-5)
    assert dicom_meta["orientation"] == nifti_meta["orientation"] == "".join(nib.aff2axcodes(affine))
    assert dicom_meta["study_pseudonym"].startswith("s-") and dicom_meta["n_slices"] == 12

    # Independent ground truth: every file as pydicom reads it, HU by pydicom's modality LUT, placed by position.
    normal_lps = (LPS_TO_RAS @ affine)[:3, 2]
    origin_lps = (LPS_TO_RAS @ affine)[:3, 3]
    for path in paths:
        dataset = pydicom.dcmread(path)
        index = round(
            float((np.asarray(dataset.ImagePositionPatient, float) - origin_lps) @ normal_lps)
            / (normal_lps @ normal_lps)
        )
        expected = apply_modality_lut(dataset.pixel_array, dataset).T  # (I, J)
        assert np.array_equal(from_dicom["ct"][:, :, index], expected)

    # After the transform both give the same RAS tensor.
    transform = plugin.transforms(train=False)
    a, b = transform(from_dicom)["ct"], transform(from_nifti)["ct"]
    assert a.shape == (3, 16, 16, 16) and a.dtype == torch.float16 and torch.equal(a, b)
    assert_no_identifier(json.dumps(dicom_meta) + caplog.text)


def test_pydicom_bundled_ct_slice_gives_pydicom_hounsfield_units():
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    sample = medclip.get_modality("ct").load(path)
    expected = apply_modality_lut(dataset.pixel_array, dataset).T[:, :, None]  # (I, J, 1)
    assert np.array_equal(sample["ct"], expected)
    np.testing.assert_allclose(sample["ct_meta"]["spacing"], [0.661468, 0.661468, 5.0], atol=1e-6)
    assert sample["ct_meta"]["orientation"] == "LPS"  # an axial DICOM slice: i runs to the left, j posterior
    assert_no_identifier(json.dumps(sample["ct_meta"]))
    assert str(dataset.PatientName) not in json.dumps(sample["ct_meta"])


def test_nibabel_bundled_nifti_matches_nibabel():
    path = os.path.join(nib.testing.data_path, "anatomical.nii")
    image = nib.load(path)
    sample = medclip.get_modality("ct").load(path)
    np.testing.assert_allclose(sample["ct"], image.get_fdata(), rtol=1e-6)
    np.testing.assert_allclose(sample["ct_meta"]["affine"], image.affine, atol=1e-5)
    assert sample["ct_meta"]["orientation"] == "".join(nib.aff2axcodes(image.affine))


def _shift_positions(dataset):  # gantry tilt: each slice shifted in-plane in proportion to its position
    position = np.asarray(dataset.ImagePositionPatient, dtype=float)
    position[1] += 0.3 * position[2]
    dataset.ImagePositionPatient = [f"{value:.6g}" for value in position]


MALFORMED = {
    "missing_slices": lambda files: files[5].unlink(),
    "duplicate_positions": lambda files: edit_copy(files[4], files[4].with_name("DUP.dcm")),
    "gantry_tilt": lambda files: [edit(path, _shift_positions) for path in files],
    "inconsistent_orientation": lambda files: edit(
        files[2], lambda d: setattr(d, "ImageOrientationPatient", ["1", "0", "0", "0", "0.9950042", "0.0998334"])
    ),
    "inconsistent_size": lambda files: edit(files[3], _shrink),
    "bad_affine": lambda files: [
        edit(path, lambda d: setattr(d, "ImageOrientationPatient", ["1", "0", "0", "0.5", "0.5", "0"]))
        for path in files
    ],
    "unsupported_transfer_syntax": lambda files: [edit(path, _as_mpeg4) for path in files],
    "not_dicom": lambda files: files[0].with_name("notes.txt").write_text(IDENTIFIERS["PatientName"]),
}


def edit_copy(source, destination):
    shutil.copyfile(source, destination)
    edit(destination, lambda d: setattr(d, "SOPInstanceUID", generate_uid()))


def _shrink(dataset):
    dataset.Rows, dataset.Columns = 8, 10
    dataset.PixelData = np.zeros((8, 10), dtype=np.uint16).tobytes()


def _as_mpeg4(dataset):
    dataset.file_meta.TransferSyntaxUID = MPEG4HP41
    dataset.PixelData = encapsulate([b"\x00\x00\x01\xb3" * 16])


@pytest.mark.parametrize("reason", sorted(MALFORMED))
def test_malformed_series_give_named_reasons_without_identifiers(tmp_path, hounsfield, reason, caplog):
    caplog.set_level(logging.DEBUG)
    files = write_series(tmp_path / "series", hounsfield, series_uid=SERIES_UID)
    files.sort(key=lambda path: int(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2] * 100))
    MALFORMED[reason](files)
    with pytest.raises(ModalityError) as raised:
        medclip.get_modality("ct").load(tmp_path / "series")
    assert raised.value.reason == reason
    if reason == "unsupported_transfer_syntax":
        assert "MPEG-4 AVC/H.264 High Profile" in str(raised.value) and MPEG4HP41 in str(raised.value)
    assert_no_identifier(str(raised.value) + caplog.text)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000"])
def test_compressed_series_decode_through_pydicom_plugins(tmp_path, syntax):
    hounsfield = np.random.default_rng(1).integers(-1024, 1500, size=(64, 64, 3)).astype(np.int16)  # J2K needs 64+ px
    files = write_series(tmp_path / "series", hounsfield)
    for path in files:
        edit(path, lambda dataset: dataset.compress(syntax))
    sample = medclip.get_modality("ct").load(tmp_path / "series")
    assert np.array_equal(sample["ct"], hounsfield)
    assert sample["ct_meta"]["transfer_syntax"] == syntax.name


def test_gantry_tilt_tag_is_rejected(tmp_path, hounsfield):
    files = write_series(tmp_path / "series", hounsfield)
    edit(files[0], lambda d: setattr(d, "GantryDetectorTilt", "15"))
    with pytest.raises(ModalityError, match="gantry tilt of 15"):
        medclip.get_modality("ct").load(tmp_path / "series")


def test_mixed_folder_loads_the_good_series_and_names_the_rest(tmp_path, hounsfield):
    folder = tmp_path / "study"
    write_series(folder / "a", hounsfield, series_number=2)
    bad = write_series(folder / "b", hounsfield, series_number=5)
    bad[4].unlink()
    plugin = medclip.get_modality("ct")
    sample = plugin.load(folder)
    assert np.array_equal(sample["ct"], hounsfield)
    assert sample["ct_meta"]["rejected_series"] == [{"series_number": 5, "reason": "missing_slices"}]

    write_series(folder / "c", hounsfield[::-1], series_number=7)  # a second usable series: the user must choose
    with pytest.raises(ModalityError) as raised:
        plugin.load(folder)
    assert raised.value.reason == "mixed_series" and "[2, 7]" in str(raised.value)
    chosen = plugin.load(plugin.resolve("study#series=7", tmp_path))
    assert np.array_equal(chosen["ct"], hounsfield[::-1])
    with pytest.raises(ModalityError, match="missing_series"):
        plugin.load({"path": folder, "series": 9})


@pytest.mark.parametrize(
    "affine,codes,reason",
    [
        (np.zeros((4, 4)), (1, 0), "bad_affine"),
        (np.diag([1.0, 1.0, 0.0, 1.0]), (1, 0), "bad_affine"),
        (np.full((4, 4), np.nan), (1, 0), "bad_affine"),
        (np.eye(4), (0, 0), "missing_affine"),
    ],
    ids=["all_zero", "singular", "non_finite", "no_sform_no_qform"],
)
def test_nifti_without_a_usable_affine_is_rejected(tmp_path, affine, codes, reason):
    path = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.int16), np.eye(4)), path)
    # Patch the header bytes: nibabel's writer would otherwise put a valid affine back on save.
    raw = bytearray(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw)))
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[0], affine[1], affine[2]
    header["sform_code"], header["qform_code"] = codes
    raw[: len(header.binaryblock)] = header.binaryblock
    path.write_bytes(bytes(raw))
    with pytest.raises(ModalityError) as raised:
        medclip.get_modality("ct").load(path)
    assert raised.value.reason == reason


def test_qform_is_used_when_there_is_no_sform(tmp_path, hounsfield):
    image = nib.Nifti1Image(hounsfield, None)
    image.set_qform(AXIAL, code=1)
    image.set_sform(None, code=0)
    nib.save(image, tmp_path / "q.nii")
    meta = medclip.get_modality("ct").load(tmp_path / "q.nii")["ct_meta"]
    assert meta["affine_source"] == "qform"
    np.testing.assert_allclose(meta["affine"], AXIAL, atol=1e-4)


def test_numpy_with_sidecar(tmp_path, hounsfield):
    np.save(tmp_path / "v.npy", hounsfield)
    plugin = medclip.get_modality("ct")
    with pytest.raises(ModalityError, match="missing_sidecar"):
        plugin.load(tmp_path / "v.npy")
    (tmp_path / "v.json").write_text(json.dumps({"spacing": [0.7, 0.8, 2.5], "orientation": "LPS"}))
    meta = plugin.load(tmp_path / "v.npy")["ct_meta"]
    assert meta["orientation"] == "LPS" and meta["spacing"] == [0.7, 0.8, 2.5]
    np.testing.assert_allclose(np.asarray(meta["affine"])[:3, :3], AXIAL[:3, :3], atol=1e-6)


def test_cache_skips_reading_and_matches_the_uncached_pipeline(tmp_path, hounsfield, caplog):
    caplog.set_level(logging.DEBUG)
    write_series(tmp_path / "Doe_Jane", hounsfield, series_uid=SERIES_UID)
    cached = medclip.get_modality("ct", {**SMALL, "cache_dir": str(tmp_path / "cache")})
    plain = medclip.get_modality("ct", SMALL)
    first = cached.load(tmp_path / "Doe_Jane")
    second = cached.load(tmp_path / "Doe_Jane")
    assert isinstance(second["ct"], np.memmap) and second["ct"].dtype == np.int16
    assert second["ct_meta"]["preprocessed"] == cached.preprocessing.fingerprint_hash
    assert second["ct_meta"]["shape"] == [16, 16, 16] and second["ct_meta"]["source_shape"] == [20, 16, 12]
    reference = plain.transforms(train=False)(plain.load(tmp_path / "Doe_Jane"))["ct"]
    for sample in (first, second):
        assert torch.equal(cached.transforms(train=False)(sample)["ct"], reference)
    files = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert len([path for path in files if path.suffix == ".npy"]) == 1
    text = "\n".join(str(path) + path.read_bytes().decode("latin-1") for path in files)
    assert_no_identifier(text + caplog.text)
    assert "Doe_Jane" not in text

    other = medclip.get_modality("ct", {**SMALL, "spacing": [2.0, 2.0, 5.0], "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ModalityError, match="preprocess_mismatch"):
        other.transforms(train=False)(second)
    assert other.load(tmp_path / "Doe_Jane")["ct_meta"]["preprocessed"] == other.preprocessing.fingerprint_hash
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2  # a changed fingerprint made a new entry


def test_deterministic_windows_are_cached_as_the_finished_input(tmp_path, hounsfield):
    """Without a random HU shift the cache stores the windowed float16 channels: a warm load is the encoder input."""
    write_series(tmp_path / "Doe_Jane", hounsfield, series_uid=SERIES_UID)
    options = {**SMALL, "cache_dir": str(tmp_path / "cache"), "hu_windows": ["lung", "bone"]}
    windowed = medclip.get_modality("ct", {**options, "augment": False})
    hounsfield_cached = medclip.get_modality("ct", options)  # augment with hu_shift: HU cached, windowed per load
    assert windowed.preprocessing.fingerprint_hash != hounsfield_cached.preprocessing.fingerprint_hash
    windowed.load(tmp_path / "Doe_Jane")
    warm = windowed.load(tmp_path / "Doe_Jane")
    assert isinstance(warm["ct"], np.memmap) and warm["ct"].dtype == np.float16 and warm["ct"].shape == (2, 16, 16, 16)
    assert warm["ct_meta"]["shape"] == [16, 16, 16]  # the spatial shape, as for an HU entry
    transformed = windowed.transforms(train=False)(warm)
    assert transformed["ct"] is warm["ct"]  # nothing left to do: no copy until the batch
    reference = hounsfield_cached.transforms(train=False)(hounsfield_cached.load(tmp_path / "Doe_Jane"))["ct"]
    batch = windowed.collate([transformed, {}, transformed])
    assert torch.equal(batch["ct"][0], reference) and torch.equal(batch["ct"][2], reference)  # bit-identical
    assert batch["ct_mask"].tolist() == [True, False, True] and not batch["ct"][1].any()  # a missing row is zeros
    uncached = medclip.get_modality("ct", {**SMALL, "hu_windows": ["lung", "bone"], "augment": False})
    direct = uncached.transforms(train=False)(uncached.load(tmp_path / "Doe_Jane"))["ct"]
    np.testing.assert_array_equal(np.asarray(direct), reference.numpy())  # no cache: the same finished input
    other = medclip.get_modality("ct", {**options, "augment": False, "hu_windows": ["lung"]})
    with pytest.raises(ModalityError, match="preprocess_mismatch"):  # another window: the entry does not apply
        other.transforms(train=False)(warm)


def test_collate_in_a_worker_process_equals_collate_in_the_main_process():
    """In a DataLoader worker the batch is allocated in shared memory (no copy on the way out); same values."""
    from torch.utils.data import DataLoader

    plugin = medclip.get_modality("ct", {**SMALL, "augment": False})
    transform = plugin.transforms(train=False)
    samples = [transform(sample) for sample in plugin.synthetic(3)]
    samples.insert(1, {})  # a row without a CT
    expected = plugin.collate(samples)
    loader = DataLoader(samples, batch_size=4, num_workers=1, collate_fn=plugin.collate)
    batch = next(iter(loader))
    assert torch.equal(batch["ct"], expected["ct"]) and torch.equal(batch["ct_mask"], expected["ct_mask"])
    assert not batch["ct"][1].any() and batch["ct"].dtype == torch.float16


def test_train_transform_augments_within_range_and_never_flips():
    plugin = medclip.get_modality("ct", SMALL)
    sample = plugin.synthetic(1)[0]
    torch.manual_seed(0)
    augmented = [plugin.transforms(train=True)(dict(sample))["ct"] for _ in range(3)]
    plain = plugin.transforms(train=False)(dict(sample))["ct"]
    assert all(a.shape == plain.shape and 0 <= a.min() and a.max() <= 1 for a in augmented)
    assert any(not torch.equal(a, plain) for a in augmented)
    left_right = [(a.float() - plain.float()).abs().mean() for a in augmented]
    flipped = (plain.flip(1).float() - plain.float()).abs().mean()
    assert all(difference < flipped for difference in left_right)


@pytest.mark.parametrize("encoder", ["vit", "resnet"])
def test_encoders_return_pooled_and_tokens(encoder):
    spec = resolve_spec(encoder, "tiny", 3, (32, 32, 16), patch_size=(8, 8, 8))
    module = build_volume_encoder(spec)
    output = module(torch.rand(2, 3, 32, 32, 16, dtype=torch.float16))
    assert output.pooled.shape == (2, spec.width) and output.tokens.shape[0] == 2
    assert output.tokens.shape[2] == spec.width
    if encoder == "vit":
        assert output.tokens.shape[1] == 4 * 4 * 2
    output.pooled.sum().backward()


def test_vit_gradient_checkpointing_matches_plain():
    torch.manual_seed(0)
    plain = build_volume_encoder(resolve_spec("vit", "tiny", 1, (16, 16, 16), patch_size=(8, 8, 8)))
    checkpointed = build_volume_encoder(
        resolve_spec("vit", "tiny", 1, (16, 16, 16), patch_size=(8, 8, 8), gradient_checkpointing=True)
    )
    checkpointed.load_state_dict(plain.state_dict())
    volumes = torch.rand(2, 1, 16, 16, 16)
    a, b = plain(volumes).pooled, checkpointed(volumes).pooled
    torch.testing.assert_close(a, b)
    a.sum().backward()
    b.sum().backward()
    for (name, p), (_, q) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_presets_and_config_errors():
    base = resolve_spec("vit", "base", 3, (224, 224, 112))
    assert (base.width, base.layers, base.heads) == (768, 12, 12)
    with pytest.raises(medclip.config.ConfigError, match="must divide"):
        medclip.get_modality("ct", {"size": [100, 100, 100]})
    with pytest.raises(medclip.config.ConfigError, match="HU window"):
        medclip.get_modality("ct", {"hu_windows": ["lnug"]})
    assert medclip.get_modality("ct", {"hu_windows": ["-600:1500"]}).config.hu_windows == ["-600:1500"]


def test_phantom_findings_are_drawn_in_hounsfield_units():
    normal = chest_phantom(3, findings={"nodule": False, "effusion": False, "cardiomegaly": False})
    sick = chest_phantom(3, findings={"nodule": True, "effusion": True, "cardiomegaly": True})
    lung = lambda case: ((case.hounsfield < -600) & (case.hounsfield > -950)).sum()  # noqa: E731
    assert lung(sick) < lung(normal)  # fluid, nodule and a larger heart replace aerated lung
    assert set(sick.details) == {"nodule", "effusion", "cardiomegaly"}
    assert -1024 <= normal.hounsfield.min() and normal.hounsfield.max() < 1000


def test_phantom_dicom_dataset_and_inspect_leak_nothing(tmp_path, capsys, caplog):
    from medclip.cli import main

    caplog.set_level(logging.DEBUG)
    manifest = write_phantom_dataset(
        tmp_path / "ph", n=2, shape=(24, 24, 16), spacing=(16, 16, 21), volume_format="both"
    )
    rows = manifest.read_text().splitlines()
    assert rows[0] == "patient_id,study_id,ct,report,label:pulmonary nodule,label:pleural effusion,label:cardiomegaly"
    folder = tmp_path / "ph" / "dicom" / "case_0000"
    nifti = tmp_path / "ph" / "volumes" / "case_0000.nii.gz"
    assert np.array_equal(medclip.get_modality("ct").load(folder)["ct"], nib.load(nifti).get_fdata())
    planted = str(pydicom.dcmread(next(folder.iterdir())).PatientName)
    for path in (folder, nifti):
        assert main(["inspect", str(path)]) == 0
        text = capsys.readouterr().out
        summary = json.loads(text)
        assert summary["modality"] == "ct" and summary["meta"]["orientation"] == "RAS"
        assert planted not in text and "case_0000" not in text
    assert planted not in caplog.text


def test_ct_report_pretraining_on_phantoms(tmp_path):
    from medclip.recipe_registry import RECIPES, recipe_config_path
    from recipes.pretrain import pretrain

    manifest = write_phantom_dataset(tmp_path / "ph", n=8, shape=(24, 24, 16), spacing=(16, 16, 21))
    path = recipe_config_path(RECIPES.get("pretrain"), "ct_report_pretrain.yaml")
    overrides = [
        f"data.manifest={manifest}",
        f"out={tmp_path / 'run'}",
        f"modalities.ct.cache_dir={tmp_path / 'cache'}",
        "modalities.ct.size=[16, 16, 16]",
        "modalities.ct.spacing=[24, 24, 21]",
        "modalities.ct.patch_size=[8, 8, 8]",
        "modalities.report.width=32",
        "model.embed_dim=16",
        "data.val_fraction=0.0",
        "data.test_fraction=0.0",
        "modalities.report.layers=1",
        "modalities.report.max_tokens=48",
        "train.steps=2",
        "train.batch_size=4",
        "train.warmup_steps=1",
        "train.log_every=1",
        "train.progress=false",
    ]
    experiment = config.load(PretrainConfig, path, overrides)
    result = pretrain(experiment)
    assert (result.checkpoint / "model.safetensors").is_file()
    assert np.isfinite(result.metrics["loss"])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 8  # every training volume was preprocessed once
    model = medclip.load_model(result.checkpoint)
    expected = medclip.get_modality("ct", experiment.modalities["ct"]).preprocessing.fingerprint_hash
    assert model.preprocess.modalities["ct"].preprocessing.fingerprint_hash == expected
    from medclip.embedding import embed

    embedding = embed(model, "ct", [tmp_path / "ph" / "volumes" / "case_0003.nii.gz"])
    assert embedding.shape == (1, 16) and torch.isfinite(embedding).all()
