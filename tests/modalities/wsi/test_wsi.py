"""The wsi modality on slides written in-test with tifffile (pyramid, JPEG tiles, MPP tags).

Readers agree pixel for pixel (medclip's tile reader, plain tiffslide, OpenSlide), the level/MPP logic, tissue
detection on a slide with a known tissue region, per-slide reason codes, encoders and the feature cache.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from medclip.types import ModalityError
from modalities.wsi import WSIConfig, WSIModality, otsu_threshold, parse_reference, tissue_mask
from modalities.wsi.slide import Slide
from modalities.wsi.synthetic import render_tissue, tissue_type_map, write_slide
from tests.helpers import refusal

openslide = pytest.importorskip("openslide")
tiffslide = pytest.importorskip("tiffslide")


def textured(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render_tissue(tissue_type_map(size, size, rng, tissue_fraction=0.9), rng)


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    """A 1024 x 1024 three-level pyramidal JPEG TIFF at 0.5 MPP with 256-pixel tiles."""
    path = tmp_path_factory.mktemp("slides") / "slide.tiff"
    return write_slide(path, textured(1024), mpp=0.5, levels=3, tile=256)


def test_the_written_file_is_a_tiled_pyramid_with_mpp_tags(slide_path):
    with tifffile.TiffFile(slide_path) as handle:
        pages = handle.pages
        assert [page.shape[:2] for page in pages] == [(1024, 1024), (512, 512), (256, 256)]
        assert all(page.is_tiled and page.tilewidth == 256 for page in pages)
        assert pages[0].compression == tifffile.COMPRESSION.JPEG
        assert pages[0].tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
    assert Slide(slide_path, "tiffslide").mpp == pytest.approx(0.5)
    assert Slide(slide_path, "openslide").mpp == pytest.approx(0.5)


REGIONS = [  # (level-0 x, level-0 y, level, width, height)
    (0, 0, 0, 256, 256),  # one tile, aligned
    (256, 512, 0, 256, 256),
    (100, 37, 0, 300, 200),  # crosses four tiles
    (512, 0, 1, 256, 256),  # aligned at level 1
    (130, 260, 1, 97, 150),
    (0, 0, 2, 256, 256),  # a whole level
    (900, 900, 0, 256, 256),  # runs off the slide: white padding
]


@pytest.mark.parametrize("region", REGIONS, ids=str)
def test_coordinates_give_identical_pixels_across_readers(slide_path, region):
    x, y, level, width, height = region
    ours = Slide(slide_path, "tiffslide").read_region(x, y, level, width, height)
    via_openslide = Slide(slide_path, "openslide").read_region(x, y, level, width, height)
    assert ours.shape == (height, width, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, via_openslide)
    inside_w = min(width, 1024 // 2**level - x // 2**level)
    inside_h = min(height, 1024 // 2**level - y // 2**level)
    plain_tiffslide = tiffslide.TiffSlide(str(slide_path)).read_region((x, y), level, (width, height), as_array=True)
    np.testing.assert_array_equal(ours[:inside_h, :inside_w], plain_tiffslide[:inside_h, :inside_w])
    plain_openslide = np.asarray(openslide.OpenSlide(str(slide_path)).read_region((x, y), level, (width, height)))
    np.testing.assert_array_equal(ours[:inside_h, :inside_w], plain_openslide[:inside_h, :inside_w, :3])
    assert (ours[inside_h:] == 255).all() and (ours[:, inside_w:] == 255).all()  # glass outside the slide


def test_level_choice_and_resize_at_a_target_mpp(slide_path):
    from PIL import Image

    slide = Slide(slide_path, "tiffslide")
    assert [slide.level_for_mpp(mpp) for mpp in (0.25, 0.5, 0.75, 1.0, 1.9, 2.0, 8.0)] == [0, 0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(slide.read_patch(256, 256, 128, 1.0), slide.read_region(256, 256, 1, 128, 128))
    level0 = slide.read_region(256, 256, 0, 192, 192)  # 128 px at 0.75 MPP = 192 level-0 px, shrunk from level 0
    expected = np.asarray(Image.fromarray(level0).resize((128, 128), Image.Resampling.BOX))
    np.testing.assert_array_equal(slide.read_patch(256, 256, 128, 0.75), expected)
    np.testing.assert_array_equal(
        Slide(slide_path, "openslide").read_patch(256, 256, 128, 0.75), slide.read_patch(256, 256, 128, 0.75)
    )


def test_threaded_reads_equal_serial_reads(slide_path):
    slide = Slide(slide_path, "tiffslide")
    coords = [(x, y) for y in range(0, 1024, 256) for x in range(0, 1024, 256)]
    coords += [(100, 37), (900, 900), (768, 10)]  # off the tile grid, running off the slide: 19 patches, odd count
    serial = slide.read_patches(coords, 256, 0.5, threads=1)
    for threads in (2, 3, 4):
        np.testing.assert_array_equal(slide.read_patches(coords, 256, 0.5, threads=threads), serial)
    via_openslide = Slide(slide_path, "openslide")
    for index, (x, y) in enumerate(coords):  # the direct-to-batch JPEG decode gives the pixels every reader gives
        np.testing.assert_array_equal(serial[index], via_openslide.read_region(x, y, 0, 256, 256))


def test_tile_aligned_patches_decode_into_the_callers_buffer(slide_path):
    slide = Slide(slide_path, "tiffslide")
    buffer = np.zeros((256, 256, 3), dtype=np.uint8)
    assert slide.read_patch(256, 512, 256, 0.5, out=buffer) is buffer  # the fast path wrote into it
    np.testing.assert_array_equal(
        buffer, tiffslide.TiffSlide(str(slide_path)).read_region((256, 512), 0, (256, 256), as_array=True)
    )
    before = buffer.copy()
    unaligned = slide.read_patch(100, 37, 256, 0.5, out=buffer)  # several tiles: assembled, the buffer untouched
    assert unaligned is not buffer
    np.testing.assert_array_equal(buffer, before)
    np.testing.assert_array_equal(unaligned, Slide(slide_path, "openslide").read_region(100, 37, 0, 256, 256))


def test_otsu_splits_a_bimodal_population():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.1, 0.02, 5000).clip(0, 1), rng.normal(0.6, 0.05, 3000).clip(0, 1)
    threshold = otsu_threshold(np.concatenate([low, high]))
    assert low.max() <= threshold < high.min()  # any cut in the gap separates the classes equally well
    assert otsu_threshold(np.full(10, 0.3)) == pytest.approx(0.3)


def test_tissue_mask_and_grid_find_a_known_tissue_region(tmp_path):
    image = np.full((1024, 1024, 3), 242, dtype=np.uint8)
    image += np.random.default_rng(1).integers(0, 6, image.shape, dtype=np.uint8)  # grey glass noise
    tissue = render_tissue(np.zeros((512, 384), np.int64), np.random.default_rng(2))
    image[256:768, 512:896] = tissue  # tissue: rows 256-767, columns 512-895
    path = write_slide(tmp_path / "known.tiff", image, mpp=0.5)
    slide = Slide(path, "tiffslide")
    thumbnail, scale = slide.thumbnail(256)
    assert thumbnail.shape[:2] == (256, 256) and scale == pytest.approx(4.0)
    mask = tissue_mask(thumbnail)
    expected = np.zeros((256, 256), dtype=bool)
    expected[64:192, 128:224] = True
    assert (mask & expected).sum() / (mask | expected).sum() > 0.95  # intersection over union

    from modalities.wsi.grid import tissue_grid

    grid = tissue_grid(slide, mpp=0.5, patch_size=128, stride=128, min_tissue_fraction=0.9, thumbnail_size=256)
    xs, ys = grid.coordinates[:, 0], grid.coordinates[:, 1]
    assert len(grid) == 4 * 3 and (xs >= 512).all() and (xs + 128 <= 896).all() and (ys >= 256).all()
    assert (ys + 128 <= 768).all() and (grid.tissue_fraction >= 0.9).all()


def test_per_slide_errors_name_their_reason(tmp_path, slide_path):
    blank = write_slide(tmp_path / "blank.tiff", np.full((512, 512, 3), 240, np.uint8), mpp=0.5)
    plugin = WSIModality(WSIConfig(patch_size=64, thumbnail_size=128))
    assert refusal(lambda: plugin.load(blank)) == "no_tissue"

    no_mpp = write_slide(tmp_path / "Doe_John.tiff", textured(512), mpp=None)
    error = pytest.raises(ModalityError, plugin.load, no_mpp).value
    assert error.reason == "no_mpp" and "Doe" not in str(error)  # never the file name
    assert WSIModality(WSIConfig(patch_size=64, assume_mpp=0.5)).load(no_mpp)["wsi_meta"]["mpp_source"] == "assumed"
    by_level = plugin.load(f"{no_mpp}#x=0,y=0,level=1,size=64")  # level references need no MPP
    assert by_level["wsi"].shape == (1, 64, 64, 3) and by_level["wsi_meta"]["mpp"] is None

    garbage = tmp_path / "garbage.svs"
    garbage.write_bytes(b"not a slide" * 100)
    assert refusal(lambda: plugin.load(garbage)) == "unreadable"
    assert refusal(lambda: plugin.load(tmp_path / "absent.tiff")) == "missing_file"
    assert refusal(lambda: plugin.load(f"{slide_path}#x=5000,y=5000,level=0,size=64")) == "out_of_bounds"

    broken = tmp_path / "broken.tiff"
    broken.write_bytes(slide_path.read_bytes())
    with tifffile.TiffFile(broken) as handle:
        offset, count = handle.pages[1].dataoffsets[0], handle.pages[1].databytecounts[0]
    with broken.open("r+b") as handle:  # overwrite level 1's first tile with bytes that are not JPEG
        handle.seek(offset)
        handle.write(b"\x00" * count)
    assert refusal(lambda: plugin.load(f"{broken}#x=0,y=0,level=1,size=64")) == "unreadable_level"
    assert plugin.load(f"{broken}#x=0,y=0,level=0,size=64")["wsi"].shape == (1, 64, 64, 3)  # other levels still read


def test_label_and_macro_images_are_never_read(tmp_path):
    label = np.full((120, 300, 3), 30, np.uint8)  # stands for a label with a burned-in patient name
    path = write_slide(tmp_path / "with_label.tiff", textured(512), associated={"label": label, "macro": label})
    with tifffile.TiffFile(path) as handle:
        associated = [page for page in handle.pages if page.description in ("label", "macro")]
        spans = [(page.dataoffsets[0], sum(page.databytecounts)) for page in associated]
    assert len(spans) == 2
    with path.open("r+b") as handle:  # destroy both: any attempt to decode them would now fail
        for offset, count in spans:
            handle.seek(offset)
            handle.write(b"\x00" * count)
    with tifffile.TiffFile(path) as handle, pytest.raises(Exception):  # noqa: B017 (whatever the codec raises)
        next(page for page in handle.pages if page.description == "label").asarray()
    for reader in ("tiffslide", "openslide"):
        plugin = WSIModality(WSIConfig(reader=reader, patch_size=64, thumbnail_size=128, max_patches=4))
        assert plugin.load(path)["wsi"].shape == (4, 64, 64, 3)  # thumbnail, grid and patches: pyramid only
        assert len(Slide(path, reader).levels) == 3
        for level in range(3):
            assert plugin.load(f"{path}#x=0,y=0,level={level},size=64")["wsi"].shape == (1, 64, 64, 3)


def test_manifest_cells_parse_and_refuse_bad_fragments(tmp_path):
    patch = parse_reference("a#b/slide.tiff#x=1024,y=2048,level=0,size=256", tmp_path).patch
    assert (patch.x, patch.y, patch.level, patch.size, patch.mpp) == (1024, 2048, 0, 256, None)
    assert parse_reference("s.tiff#mpp=0.5,cx=10.5,cy=20,size=224").patch.cx == 10.5
    assert parse_reference("dir#1/slide.svs").patch is None and parse_reference("f.safetensors").is_features
    for bad in ("s.tiff#x=1", "s.tiff#x=1,y=2,cx=3,cy=4", "s.tiff#x=1,y=2,level=0,mpp=0.5", "s.tiff#x=1,y=2,zoom=3",
                "s.tiff#x=1.5,y=2", "s.tiff#x=1,y=2,size=0", "s.tiff#x=1,y=1,x=2"):  # fmt: skip
        assert refusal(lambda bad=bad: parse_reference(bad)) == "bad_reference", bad


def test_slide_cell_loads_a_bag_of_tissue_patches_with_coordinates(slide_path):
    plugin = WSIModality(WSIConfig(patch_size=128, mpp=1.0, max_patches=5, threads=2, thumbnail_size=256))
    sample = plugin.load(plugin.resolve(slide_path.name, slide_path.parent))
    pixels, coords, meta = sample["wsi"], sample["wsi_coords"], sample["wsi_meta"]
    assert pixels.shape == (5, 128, 128, 3) and coords.shape == (5, 2)
    assert meta["kind"] == "slide" and meta["level"] == 1 and meta["extent"] == 256 and meta["n_patches"] == 5
    assert (coords % 256 == 0).all()  # the grid at a level's MPP with stride = patch size is tile-aligned
    slide = Slide(slide_path, "openslide")
    for patch, (x, y) in zip(pixels, coords, strict=True):
        np.testing.assert_array_equal(patch, slide.read_region(int(x), int(y), 1, 128, 128))
    json.dumps(meta)  # allow-listed, JSON-able metadata only


@pytest.mark.parametrize("encoder", ["abmil", "transformer", "mean"])
def test_slide_encoders_pool_real_patches_and_return_tokens(encoder):
    cfg = WSIConfig(encoder=encoder, source="features", feature_dim=12, width=16, heads=2, dropout=0.0)
    plugin = WSIModality(cfg)
    samples = plugin.synthetic(3, seed=1)
    transform = plugin.transforms(train=False)
    batch = plugin.collate([transform(dict(sample)) for sample in samples])
    net = plugin.build_encoder().eval()
    output = net(batch["wsi"])
    longest = batch["wsi"]["features"].shape[1]
    assert output.pooled.shape == (3, 16) and output.tokens.shape == (3, longest, 16)
    assert torch.equal(output.token_mask, batch["wsi"]["patch_mask"])
    alone = net(plugin.collate([transform(dict(samples[0]))])["wsi"]).pooled[0]  # no padding at all
    torch.testing.assert_close(output.pooled[0], alone, atol=1e-5, rtol=1e-5)  # padding never changes a slide
    if encoder == "transformer":  # 2-D positions are seen: moving the patches changes the slide vector
        moved = {**batch["wsi"], "positions": batch["wsi"]["positions"] * 3}
        assert not torch.allclose(net(moved).pooled, output.pooled)


def test_pixel_bags_run_through_the_timm_patch_encoder_and_local_weights_load(tmp_path):
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    weights = tmp_path / "patch.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    cfg = WSIConfig(patch_encoder="test_resnet", patch_weights=str(weights), width=16, patch_size=32, heads=2)
    plugin = WSIModality(cfg)
    net = plugin.build_encoder()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(net.patch_encoder.model.state_dict()[name], tensor)
    batch = plugin.collate([plugin.transforms(train=True)(s) for s in plugin.synthetic(2)])
    assert batch["wsi"]["pixels"].shape == (2, 2, 3, 32, 32)
    assert net(batch["wsi"]).pooled.shape == (2, 16)
    with pytest.raises(Exception, match="safetensors"):
        WSIConfig(patch_weights=str(tmp_path / "patch.pth"))
    from modalities.wsi.patch_encoder import TimmPatchEncoder

    with_pre_logits = TimmPatchEncoder("mobilenetv3_small_050").eval()  # pooled output wider than num_features
    assert with_pre_logits(torch.zeros(1, 3, 32, 32)).shape == (1, with_pre_logits.output_dim)
    with pytest.raises(ValueError, match="unknown timm model"):
        TimmPatchEncoder("resnet_typo18")


def test_feature_cache_trains_without_the_slide(tmp_path, slide_path):
    from modalities.wsi.cache import build_feature_cache, read_features, slide_key

    copy = tmp_path / "copy.tiff"
    copy.write_bytes(slide_path.read_bytes())
    cfg = WSIConfig(patch_encoder="test_resnet", patch_size=128, mpp=1.0, thumbnail_size=256, threads=2)
    summary = build_feature_cache([copy, tmp_path / "absent.tiff"], tmp_path / "cache", cfg, batch_size=8)
    assert summary["written"] == 1 and summary["skipped"] == {"missing_file": 1}
    entry = tmp_path / "cache" / f"{slide_key(copy)}.safetensors"
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".safetensors"]  # no pickle
    features, coords, record = read_features(entry)
    assert features.shape == (len(coords), summary["feature_dim"]) and record["patch_weights"] == "random-init"

    torch.manual_seed(0)  # the cache builder's seed: the same random-init encoder
    from modalities.wsi.normalisation import resolve_normalisation
    from modalities.wsi.patch_encoder import TimmPatchEncoder
    from modalities.wsi.transforms import to_tensor

    encoder = TimmPatchEncoder("test_resnet").eval()
    pixels = Slide(copy, "tiffslide").read_patches(coords[:4], 128, 1.0)
    statistics = resolve_normalisation(cfg)  # the backbone's own (timm's test_resnet: 0.5 / 0.5)
    assert record["pixel_mean"] == list(statistics.mean) == [0.5, 0.5, 0.5]
    with torch.no_grad():
        recomputed = encoder(to_tensor(pixels, statistics.mean, statistics.std)).numpy()
    np.testing.assert_allclose(features[:4], recomputed, rtol=1e-2, atol=1e-2)  # stored as float16

    feature_cfg = WSIConfig(
        source="features", feature_dim=summary["feature_dim"], feature_cache=str(tmp_path / "cache")
    )
    plugin = WSIModality(feature_cfg)
    by_slide = plugin.load(copy)
    np.testing.assert_array_equal(by_slide["wsi"], features)
    copy.unlink()  # the slide is gone: the cache entry alone is a sample
    sample = plugin.load(plugin.resolve(entry.name, entry.parent))
    batch = plugin.collate([plugin.transforms(train=True)(sample)])
    assert plugin.build_encoder()(batch["wsi"]).pooled.shape == (1, feature_cfg.width)
    wrong = WSIModality(WSIConfig(source="features", feature_dim=7))
    assert refusal(lambda: wrong.load(entry)) == "feature_mismatch"


def test_preprocess_fingerprint_refuses_another_scale():
    plugin = WSIModality(WSIConfig(mpp=0.5))
    state = json.loads(json.dumps(plugin.preprocess_state()))
    assert state["fingerprint"]["mpp"] == 0.5 and state["fingerprint"]["patch_size"] == 224
    plugin.load_preprocess_state(state)
    plugin.check_compatible({"mpp": 0.51})
    assert refusal(lambda: plugin.check_compatible({"mpp": 1.0})) == "mpp_mismatch"
