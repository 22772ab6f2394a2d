"""Synthetic breathing sequences and the sequence datasets (tvfast.training.sequences), volume reading."""

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tvfast.io.images import ImageReadError
from tvfast.io.volumes import read_volume, volume_shape
from tvfast.training.sequences import SequenceFolderDataset, VolumeFolderDataset, make_sequence


def image(h=32, w=40, seed=0):
    """A smooth image with structure (so that motion changes it)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    noise = np.random.default_rng(seed).random((h, w))
    return (0.5 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy) + 0.1 * noise).astype(np.float32)


@pytest.fixture
def png_folder(tmp_path):
    tmp_path = tmp_path / "images"
    tmp_path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.fixture
def sequence_folder(tmp_path):
    tmp_path = tmp_path / "sequences"
    tmp_path.mkdir()
    rng = np.random.default_rng(1)
    npy = rng.random((6, 20, 24)).astype(np.float32)
    tif = (rng.random((5, 20, 24)) * 65535).astype(np.uint16)
    np.save(tmp_path / "a.npy", npy)
    tifffile.imwrite(tmp_path / "b.tif", tif)  # multi-page: one page per frame
    return tmp_path, npy, tif.astype(np.float32) / 65535


# ----------------------------------------------------------------- make_sequence
def test_same_seed_same_sequence_other_seed_other_sequence():
    a = make_sequence(image(), frames=8, seed=3)
    assert a.shape == (8, 32, 40) and a.dtype == np.float32
    np.testing.assert_array_equal(a, make_sequence(image(), frames=8, seed=3))
    assert not np.array_equal(a, make_sequence(image(), frames=8, seed=4))


def test_motion_is_periodic_and_starts_at_the_image():
    img = image()
    seq = make_sequence(img, frames=16, seed=1)
    np.testing.assert_allclose(seq[0], img, atol=1e-6)  # φ = 0: no motion
    np.testing.assert_allclose(seq[8], img, atol=1e-6)  # φ = π: sin φ = 0
    dist = [float(np.abs(seq[t] - seq[0]).mean()) for t in range(16)]
    assert dist[4] > 0.01 and dist[12] > 0.01  # the extremes of the motion move the image
    assert dist[15] < 0.5 * dist[4] and dist[1] < 0.5 * dist[4]  # frame D−1 is close to frame D ≡ frame 0
    assert dist[1] < dist[2] < dist[3] < dist[4]  # smooth in time
    np.testing.assert_allclose(seq[3], seq[5], atol=1e-6)  # sin(π − φ) = sin φ


def test_make_sequence_rejects_bad_input():
    with pytest.raises(ValueError, match="expected a 2-D image"):
        make_sequence(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="finite"):
        make_sequence(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        make_sequence(image(), frames=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        make_sequence(image(), seed=-1)


# ----------------------------------------------------------------- synthetic dataset
def test_synthetic_items_layout(png_folder):
    ds = SequenceFolderDataset(png_folder, size=16, frames=4, train=False)
    assert len(ds) == 3
    item = ds[1]
    assert item["clean"].shape == (1, 4, 16, 16) and item["noisy"].shape == (1, 4, 16, 16)
    assert item["clean"].dtype == torch.float32 and item["noisy"].dtype == torch.float32
    assert 0.1 <= float(item["s"]) <= 0.5 and item["index"] == 1
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["noisy"].shape == (2, 1, 4, 16, 16)


def test_eval_items_fixed_per_index(png_folder):
    a = SequenceFolderDataset(png_folder, size=16, frames=4, train=False, seed=7)
    b = SequenceFolderDataset(png_folder, size=16, frames=4, train=False, seed=7)
    torch.manual_seed(123)
    first = a[2]
    torch.manual_seed(456)
    for again in (a[2], b[2]):
        assert torch.equal(first["clean"], again["clean"]) and torch.equal(first["noisy"], again["noisy"])
    other = SequenceFolderDataset(png_folder, size=16, frames=4, train=False, seed=8)[2]
    assert not torch.equal(first["noisy"], other["noisy"])


def test_train_items_fresh_per_epoch_and_reproducible(png_folder):
    ds = SequenceFolderDataset(png_folder, size=16, frames=4, train=True, seed=3)
    ds.set_epoch(0)
    a, b = ds[1], ds[1]
    assert torch.equal(a["clean"], b["clean"]) and torch.equal(a["noisy"], b["noisy"])
    ds.set_epoch(1)
    c = ds[1]
    assert not torch.equal(a["clean"], c["clean"])  # new motion
    assert not torch.equal(a["noisy"], c["noisy"])


def test_noise_is_relative_to_the_std_of_the_whole_sequence(sequence_folder):
    root, npy, _ = sequence_folder
    npy[0] = 0.5  # a constant frame: per-frame relative noise would leave it clean
    np.save(root / "a.npy", npy)
    ds = VolumeFolderDataset(root, size=None, frames=None, train=False, noise_level=0.3)
    item = ds[0]
    noise = item["noisy"] - item["clean"]
    assert float(noise.std() / item["clean"].std()) == pytest.approx(0.3, rel=0.05)
    assert float(noise[0, 0].std() / item["clean"].std()) == pytest.approx(0.3, rel=0.2)
    absolute = VolumeFolderDataset(root, size=None, frames=None, train=False, noise="absolute", noise_level=0.0)
    assert torch.equal(absolute[0]["noisy"], absolute[0]["clean"])


# ----------------------------------------------------------------- ready-made sequences
def test_npy_and_tiff_sequences_are_read(sequence_folder):
    root, npy, tif = sequence_folder
    assert volume_shape(root / "a.npy") == (6, 20, 24) and volume_shape(root / "b.tif") == (5, 20, 24)
    loaded = read_volume(root / "b.tif")
    np.testing.assert_array_equal(loaded.pixels, tif)
    assert loaded.dtype == np.uint16
    ds = VolumeFolderDataset(root, size=None, frames=None, train=False)
    assert len(ds) == 2
    np.testing.assert_array_equal(ds[0]["clean"][0].numpy(), npy)
    np.testing.assert_array_equal(ds[1]["clean"][0].numpy(), tif)
    first = VolumeFolderDataset(root, size=None, frames=4, train=False)[0]["clean"][0]
    np.testing.assert_array_equal(first.numpy(), npy[:4])
    resized = VolumeFolderDataset(root, size=8, frames=3, train=False)[1]
    assert resized["clean"].shape == (1, 3, 8, 8)


def test_the_caller_decides_what_a_file_is_never_its_shape(tmp_path):
    """A (H, W, 3) array is RGB to the image datasets and three-pixel-wide frames to the volume dataset;
    a (D, H, W) file with W > 4 is no image, whatever the folder's other files."""
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    a = np.random.default_rng(2).random((10, 12, 3)).astype(np.float32)
    np.save(rgb / "a.npy", a)
    as_volume = VolumeFolderDataset(rgb, size=None, frames=None, train=False)[0]["clean"]
    assert as_volume.shape == (1, 10, 12, 3)
    np.testing.assert_array_equal(as_volume[0].numpy(), a)
    as_images = SequenceFolderDataset(rgb, size=None, frames=2, train=False)[0]["clean"]
    assert as_images.shape == (1, 2, 10, 12)  # a sequence made from the grey image of the RGB array
    seq = tmp_path / "seq"
    seq.mkdir()
    np.save(seq / "v.npy", np.zeros((4, 10, 12), np.float32))
    with pytest.raises(ImageReadError, match=r"v.npy: expected a 2-D image"):
        SequenceFolderDataset(seq, size=None, frames=2)[0]


def test_training_takes_a_window_of_consecutive_frames(sequence_folder):
    root, npy, _ = sequence_folder
    ds = VolumeFolderDataset(root, size=None, frames=3, train=True, seed=0)
    starts = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        clean = ds[0]["clean"][0].numpy()
        matches = [s for s in range(4) if np.array_equal(clean, npy[s : s + 3])]
        assert len(matches) == 1
        starts.add(matches[0])
    assert len(starts) > 1


def test_sequence_folder_errors(sequence_folder, png_folder, tmp_path):
    root, _, _ = sequence_folder
    with pytest.raises(ValueError, match="b.tif' has 5 frames, fewer than frames=6"):
        VolumeFolderDataset(root, size=None, frames=6, train=False)  # every header is checked up front
    with pytest.raises(ValueError, match="frames=None"):
        SequenceFolderDataset(png_folder, frames=None)
    with pytest.raises(ImageReadError, match=r"img0.png: a volume must be \.npy"):
        VolumeFolderDataset(png_folder)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "c.png")
    with pytest.raises(ImageReadError, match=r"c.png: a volume must be"):
        VolumeFolderDataset(root)
    with pytest.raises(FileNotFoundError, match="not found"):
        SequenceFolderDataset(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not found"):
        VolumeFolderDataset(tmp_path / "absent")
    with pytest.raises(ValueError, match="frames must be a positive integer or None"):
        VolumeFolderDataset(tmp_path, frames=2.5)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        SequenceFolderDataset(png_folder, seed=-1)
    with pytest.raises(ValueError, match="s_min <= s_max"):
        SequenceFolderDataset(png_folder, noise_level=(0.5, 0.1))
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        SequenceFolderDataset(png_folder, frames=0)
    with pytest.raises(ValueError, match="unknown noise mode"):
        SequenceFolderDataset(png_folder, noise="speckle")
    with pytest.raises(IndexError, match="out of range"):
        SequenceFolderDataset(png_folder, size=8, frames=2)[3]


def test_read_volume_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(ImageReadError, match=r"flat.npy: expected a \(D, H, W\) volume .* got shape \(8, 8\)"):
        read_volume(tmp_path / "flat.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.float32))
    with pytest.raises(ImageReadError, match=r"empty.npy: expected a \(D, H, W\) volume"):
        read_volume(tmp_path / "empty.npy")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(ImageReadError, match=r"rgb.tif: expected a \(D, H, W\) volume .*\(colour samples\)"):
        read_volume(tmp_path / "rgb.tif")
    bad = np.zeros((3, 8, 8), np.float32)
    bad[1, 2, 3] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(ImageReadError, match="inf.npy: contains NaN or inf"):
        read_volume(tmp_path / "inf.npy")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(ImageReadError, match="broken.tif: cannot read volume"):
        read_volume(tmp_path / "broken.tif")
    (tmp_path / "v.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"v.png: a volume must be \.npy, \.tif, \.tiff"):
        read_volume(tmp_path / "v.png")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_volume(tmp_path / "absent.npy")
