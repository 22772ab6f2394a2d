"""Image loading (formats, bit depths, errors) and the image-folder dataset."""

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from tvfast.io.images import ImageReadError, read_grayscale
from tvfast.training.data import ImageFolderDataset, NoisyFolderDataset, list_images


def ramp(h=24, w=32):
    return np.linspace(0.0, 1.0, h * w).reshape(h, w)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        a = (rng.random((40, 48)) * 255).astype(np.uint8)
        Image.fromarray(a).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_8bit_png_and_jpeg(tmp_path):
    a = (ramp() * 255).round().astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=95)
    img = read_grayscale(tmp_path / "a.png")
    assert img.dtype == np.float32 and img.shape == (24, 32)
    np.testing.assert_allclose(img, a / 255.0, atol=1e-6)
    img = read_grayscale(tmp_path / "a.jpg")
    assert np.abs(img - a / 255.0).max() < 0.05


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_scaled_by_dtype_max(tmp_path, ext):
    a = (ramp() * 65535).round().astype(np.uint16)
    path = tmp_path / f"a16.{ext}"
    if ext == "png":
        Image.fromarray(a).save(path)
    else:
        tifffile.imwrite(path, a)
    img = read_grayscale(path)
    np.testing.assert_allclose(img, a / 65535.0, atol=1e-6)
    assert img.max() == pytest.approx(1.0)


def test_rgb_and_float_tiff(tmp_path):
    a = (ramp() * 255).astype(np.uint8)
    Image.fromarray(np.stack([a, a, a], -1)).save(tmp_path / "rgb.png")
    img = read_grayscale(tmp_path / "rgb.png")
    assert img.shape == (24, 32)
    np.testing.assert_allclose(img, a / 255.0, atol=1e-3)
    f = (ramp() * 1.5 - 0.25).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f)
    np.testing.assert_array_equal(read_grayscale(tmp_path / "f.tif"), f)  # float data is taken as it is
    f[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", f)
    with pytest.raises(ImageReadError, match="nan.tif: contains NaN"):
        read_grayscale(tmp_path / "nan.tif")


def test_npy_images_are_listed_and_read(tmp_path):
    a = ramp().astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    assert [p.name for p in list_images(tmp_path)] == ["a.npy"]
    np.testing.assert_array_equal(ImageFolderDataset(tmp_path, size=None, train=False)[0]["clean"][0], a)


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_grayscale(tmp_path / "broken.png")
    ds = ImageFolderDataset(tmp_path, size=16)
    with pytest.raises(ImageReadError, match="broken.png"):
        ds[0]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFolderDataset(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")


def test_listing_sorted_and_filtered(folder):
    assert [p.name for p in list_images(folder)] == [f"img{i}.png" for i in range(4)]


def test_crop_resize_and_sample_layout(folder):
    ds = ImageFolderDataset(folder, size=16, train=False)
    assert len(ds) == 4
    item = ds[1]
    assert item["clean"].shape == (1, 16, 16) and item["noisy"].shape == (1, 16, 16)
    assert item["clean"].dtype == torch.float32 and item["noisy"].dtype == torch.float32
    assert 0.0 <= item["clean"].min() and item["clean"].max() <= 1.0
    assert 0.1 <= float(item["s"]) <= 0.5 and item["index"] == 1
    native = ImageFolderDataset(folder, size=None, train=False)[0]
    assert native["clean"].shape == (1, 40, 48)


def test_no_resize_when_already_square_of_size(tmp_path):
    a = (np.random.default_rng(1).random((20, 20)) * 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "sq.png")
    x = ImageFolderDataset(tmp_path, size=20, train=False).clean_image(0)
    np.testing.assert_array_equal(x[0].numpy(), a.astype(np.float32) / 255.0)


def test_eval_noise_fixed_per_image(folder):
    a = ImageFolderDataset(folder, size=16, train=False, seed=7, noise_level=0.5)
    b = ImageFolderDataset(folder, size=16, train=False, seed=7, noise_level=0.5)
    torch.manual_seed(123)
    first = a[2]["noisy"]
    torch.manual_seed(456)
    assert torch.equal(first, a[2]["noisy"])
    assert torch.equal(first, b[2]["noisy"])
    assert float(a[2]["s"]) == 0.5
    assert not torch.equal(a[1]["noisy"] - a[1]["clean"], a[2]["noisy"] - a[2]["clean"])
    c = ImageFolderDataset(folder, size=16, train=False, seed=8, noise_level=0.5)
    assert not torch.equal(first, c[2]["noisy"])


def test_eval_noise_level_relative_to_image_std(folder):
    ds = ImageFolderDataset(folder, size=None, train=False, noise_level=0.3)
    item = ds[0]
    ratio = (item["noisy"] - item["clean"]).std() / item["clean"].std()
    assert ratio == pytest.approx(0.3, rel=0.1)


def test_train_noise_fresh_and_patches(folder):
    ds = ImageFolderDataset(folder, size=32, patch_size=8, train=True)
    items = [ds[0] for _ in range(6)]
    assert all(it["clean"].shape == (1, 8, 8) for it in items)
    levels = {round(float(it["s"]), 6) for it in items}
    assert len(levels) == 6 and all(0.1 <= s <= 0.5 for s in levels)


def test_train_epoch_seeding_reproducible(folder):
    ds = ImageFolderDataset(folder, size=16, train=True, seed=3)
    ds.set_epoch(0)
    a, b = ds[1], ds[1]
    assert torch.equal(a["noisy"], b["noisy"])
    ds.set_epoch(1)
    assert not torch.equal(a["noisy"], ds[1]["noisy"])


def test_absolute_noise_and_validation(folder):
    ds = ImageFolderDataset(folder, size=16, train=False, noise="absolute", noise_level=0.0)
    assert torch.equal(ds[0]["noisy"], ds[0]["clean"])
    with pytest.raises(ValueError):
        ImageFolderDataset(folder, noise="speckle")
    with pytest.raises(ValueError):
        ImageFolderDataset(folder, noise_level=(0.5, 0.1))
    with pytest.raises(ValueError):
        ImageFolderDataset(folder, size=16, patch_size=32)


def test_augment_is_a_seeded_dihedral_transform(folder):
    plain = ImageFolderDataset(folder, size=16, train=True, seed=3)
    aug = ImageFolderDataset(folder, size=16, train=True, seed=3, augment=True)
    clean = plain.clean_image(2)[0]
    group = [torch.rot90(c, k) for c in (clean, clean.flip(-1)) for k in range(4)]
    seen = set()
    for epoch in range(12):
        aug.set_epoch(epoch)
        a, b = aug[2], aug[2]
        assert torch.equal(a["clean"], b["clean"]) and torch.equal(a["noisy"], b["noisy"])
        matches = [k for k, g in enumerate(group) if torch.equal(a["clean"][0], g)]
        assert matches, "augmented image is not a flip/rotation of the original"
        seen.add(matches[0])
    assert len(seen) > 2  # several group elements are drawn
    # validation images are never augmented
    val = ImageFolderDataset(folder, size=16, train=False, augment=True)
    assert torch.equal(val[2]["clean"][0], clean)


def test_augment_keeps_non_square_shapes(folder):
    ds = ImageFolderDataset(folder, size=None, train=True, seed=0, augment=True)
    for epoch in range(6):
        ds.set_epoch(epoch)
        assert ds[0]["clean"].shape == (1, 40, 48)


def test_shared_base_checks_and_is_abstract(folder):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        ImageFolderDataset(folder, seed=-1)
    with pytest.raises(ValueError, match="size must be positive"):
        ImageFolderDataset(folder, size=0)
    with pytest.raises(IndexError, match="index 4 out of range for 4 images"):
        ImageFolderDataset(folder, size=16)[4]
    with pytest.raises(TypeError, match="abstract"):
        NoisyFolderDataset(folder, size=16)  # what a file is and how an item is drawn: a subclass's job


def test_cache_serves_the_decoded_image(folder):
    cached = ImageFolderDataset(folder, size=16, train=False)
    assert cached.clean_image(1) is cached.clean_image(1)
    uncached = ImageFolderDataset(folder, size=16, train=False, cache=False)
    assert uncached.clean_image(1) is not uncached.clean_image(1)
    assert torch.equal(uncached.clean_image(1), cached.clean_image(1))

