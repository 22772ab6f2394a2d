"""End-to-end tests of the ``tvfast`` command line.

Every test runs ``python -m tvfast.cli.main …`` (what the ``tvfast`` console
script calls) in a subprocess, on tiny images in a temporary folder, with a
tiny random ``LambdaNet`` passed as ``--weights`` and few PDHG iterations.
User errors must exit with status 2 and print one line ``tvfast: error: …``
on stderr, with no traceback and no output file left behind.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

H, W = 24, 20  # tiny, and not a multiple of the U-Net's 2**depth
ITERS = "8"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def run_cli(*args, cwd, timeout=300):
    """``tvfast ARGS`` in a subprocess (cwd = ``cwd``); the CompletedProcess."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "tvfast.cli.main", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout,
    )  # fmt: skip


def assert_ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr


def assert_usage_error(r, *needles):
    """Exit status 2, stderr exactly one line ``tvfast: error: …`` holding every needle."""
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr}"
    assert lines[0].startswith("tvfast: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_no_output_files(folder: Path):
    """``folder`` is absent or empty: no output, no temporary file."""
    if folder.exists():
        assert sorted(p.name for p in folder.iterdir()) == []


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def noisy(shape, seed=0):
    """A piecewise-constant image plus noise, float in [0, 1]."""
    rng = np.random.default_rng(seed)
    clean = np.full(shape, 0.3)
    clean[4:18, 5:15, ...] = 0.75
    return np.clip(clean + 0.15 * rng.standard_normal(shape), 0, 1)


def total_variation(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.abs(np.diff(a, axis=0)).sum() + np.abs(np.diff(a, axis=1)).sum())


def write_png8(path, shape=(H, W), seed=0):
    import skimage.io

    skimage.io.imsave(path, np.rint(noisy(shape, seed) * 255).astype(np.uint8), check_contrast=False)
    return Path(path)


def write_png16(path, seed=1):
    import skimage.io

    skimage.io.imsave(path, np.rint(noisy((H, W), seed) * 65535).astype(np.uint16), check_contrast=False)
    return Path(path)


def write_tiff16(path, seed=2):
    import tifffile

    tifffile.imwrite(path, np.rint(noisy((H, W), seed) * 65535).astype(np.uint16))
    return Path(path)


def write_npy(path, seed=3):
    np.save(path, noisy((H, W), seed).astype(np.float32))
    return Path(path)


def read_back(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    import skimage.io

    return skimage.io.imread(path)


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A tiny random LambdaNet saved as tiny.safetensors + tiny.json."""
    import torch

    from tvfast.models.lambda_net import LambdaNet
    from tvfast.models.unet import UNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    LambdaNet(UNet(base_channels=4, depth=2), n_iter=8).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def scalar_run(tmp_path_factory):
    """``tvfast denoise a.png -o out/a_tv.png --lambda 0.05`` on an 8-bit grey PNG."""
    root = tmp_path_factory.mktemp("scalar")
    src = write_png8(root / "a.png")
    target = root / "out" / "a_tv.png"
    r = run_cli("denoise", src, "-o", target, "--lambda", "0.05", "--iters", ITERS, cwd=root)
    return SimpleNamespace(root=root, src=src, target=target, result=r)


FOLDER_INPUTS = {  # name -> (writer, dtype read back, shape)
    "grey8.png": (write_png8, np.uint8, (H, W)),
    "grey16.png": (write_png16, np.uint16, (H, W)),
    "tiff16.tif": (write_tiff16, np.uint16, (H, W)),
    "array.npy": (write_npy, np.float32, (H, W)),
    "colour.png": (lambda p: write_png8(p, shape=(H, W, 3), seed=4), np.uint8, (H, W, 3)),
}


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, tiny_weights):
    """``tvfast denoise in/ -o out/ --weights tiny --save-lambda --compare`` on one image of each kind."""
    root = tmp_path_factory.mktemp("folder")
    src = root / "in"
    src.mkdir()
    for name, (writer, _, _) in FOLDER_INPUTS.items():
        writer(src / name)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = root / "out"
    r = run_cli("denoise", src, "-o", out, "--weights", tiny_weights, "--iters", ITERS,
                "--save-lambda", "--compare", cwd=root)  # fmt: skip
    return SimpleNamespace(root=root, src=src, out=out, before=before, result=r)


# ---------------------------------------------------------------------------
# denoise: single file, scalar λ
# ---------------------------------------------------------------------------


def test_denoise_scalar_lambda_writes_the_file(scalar_run):
    r = scalar_run.result
    assert_ok(r)
    assert scalar_run.target.is_file()
    assert f"wrote {scalar_run.target}" in r.stdout
    out = read_back(scalar_run.target)
    original = read_back(scalar_run.src)
    assert out.dtype == np.uint8 and out.shape == (H, W)
    assert total_variation(out) < 0.9 * total_variation(original)  # it did smooth
    assert abs(out.astype(float).mean() - original.astype(float).mean()) < 3  # and kept the mean
    assert sorted(p.name for p in scalar_run.target.parent.iterdir()) == ["a_tv.png"]


def test_output_file_has_ordinary_permissions(scalar_run):
    """Outputs are readable like any file the user creates (umask applies), not 0600 temp-file modes."""
    assert_ok(scalar_run.result)
    umask = os.umask(0)
    os.umask(umask)
    mode = scalar_run.target.stat().st_mode & 0o777
    assert mode == 0o666 & ~umask, f"output mode {mode:o}, expected {0o666 & ~umask:o}"


# ---------------------------------------------------------------------------
# denoise: --lambda-map
# ---------------------------------------------------------------------------


def test_denoise_lambda_map_matches_scalar(scalar_run, tmp_path):
    """A constant (H, W) map gives the same result as the same scalar --lambda."""
    assert_ok(scalar_run.result)
    lam = tmp_path / "lam.npy"
    np.save(lam, np.full((H, W), 0.05, dtype=np.float32))
    target = tmp_path / "out" / "a_map.png"
    r = run_cli("denoise", scalar_run.src, "-o", target, "--lambda-map", lam, "--iters", ITERS, cwd=tmp_path)
    assert_ok(r)
    out = read_back(target)
    assert out.dtype == np.uint8 and out.shape == (H, W)
    diff = np.abs(out.astype(int) - read_back(scalar_run.target).astype(int))
    assert diff.max() <= 1


def test_denoise_lambda_map_of_wrong_size(tmp_path):
    src = write_png8(tmp_path / "a.png")
    lam = tmp_path / "lam.npy"
    np.save(lam, np.full((H + 1, W), 0.05, dtype=np.float32))
    out = tmp_path / "out"
    r = run_cli("denoise", src, "-o", out / "a.png", "--lambda-map", lam, "--iters", ITERS, cwd=tmp_path)
    assert_usage_error(r, "--lambda-map")
    assert_no_output_files(out)


# ---------------------------------------------------------------------------
# denoise: folder in, folder out, learned model from --weights, every format
# ---------------------------------------------------------------------------


def test_folder_run_succeeds(folder_run):
    assert_ok(folder_run.result)
    # the inputs are untouched
    assert {p.name: p.read_bytes() for p in folder_run.src.iterdir()} == folder_run.before


def test_folder_output_keeps_the_names(folder_run):
    assert_ok(folder_run.result)
    names = {p.name for p in folder_run.out.iterdir()}
    sidecars = {f"{Path(n).stem}{s}" for n in FOLDER_INPUTS for s in ("_lambda.npy", "_lambda.png", "_compare.png")}
    assert names == set(FOLDER_INPUTS) | sidecars
    assert hidden_files(folder_run.out) == []  # no temporary files left


@pytest.mark.parametrize("name", list(FOLDER_INPUTS))
def test_output_keeps_format_bit_depth_and_shape(folder_run, name):
    assert_ok(folder_run.result)
    _, dtype, shape = FOLDER_INPUTS[name]
    original = read_back(folder_run.src / name)
    out = read_back(folder_run.out / name)
    assert original.dtype == dtype  # the test wrote what it meant to
    assert out.dtype == dtype, f"{name}: {out.dtype}, expected {dtype}"
    assert out.shape == shape
    assert np.isfinite(out.astype(np.float64)).all()
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    # learned Λ (positive everywhere) smooths: lower total variation, about the same mean
    scale = out.astype(np.float64) / top, original.astype(np.float64) / top
    assert total_variation(scale[0]) < total_variation(scale[1])
    assert abs(scale[0].mean() - scale[1].mean()) < 0.02


@pytest.mark.parametrize("name", list(FOLDER_INPUTS))
def test_save_lambda_writes_npy_and_png(folder_run, name):
    assert_ok(folder_run.result)
    stem = Path(name).stem
    lam = np.load(folder_run.out / f"{stem}_lambda.npy", allow_pickle=False)
    channels = FOLDER_INPUTS[name][2][2:]  # colour: one map per channel
    assert lam.shape == (*channels, H, W)
    assert np.issubdtype(lam.dtype, np.floating)
    assert np.isfinite(lam).all() and (lam > 0).all()
    png = read_back(folder_run.out / f"{stem}_lambda.png")
    assert png.dtype == np.uint8 and png.shape[:2] == (H, W)


@pytest.mark.parametrize("name", list(FOLDER_INPUTS))
def test_compare_writes_a_figure(folder_run, name):
    assert_ok(folder_run.result)
    figure = read_back(folder_run.out / f"{Path(name).stem}_compare.png")
    assert figure.ndim == 3 and figure.shape[0] > 50 and figure.shape[1] > 150


def test_sidecars_of_inputs_with_the_same_stem_do_not_collide(tmp_path):
    """a.png and a.tif would both write a_lambda.npy: the run is refused before anything is written, naming the
    file; without the sidecars the two outputs differ (a.png, a.tif) and both are written."""
    src = tmp_path / "in"
    src.mkdir()
    write_png8(src / "a.png")
    write_tiff16(src / "a.tif")
    out = tmp_path / "out"
    r = run_cli("denoise", src, "-o", out, "--lambda", "0.05", "--iters", "2", "--save-lambda", cwd=tmp_path)
    assert_usage_error(r)
    assert "a_lambda.npy" in r.stderr and "same name stem" in r.stderr
    assert_no_output_files(out)
    assert_ok(run_cli("denoise", src, "-o", out, "--lambda", "0.05", "--iters", "2", cwd=tmp_path))
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.tif"]


# ---------------------------------------------------------------------------
# overwriting
# ---------------------------------------------------------------------------


def test_refuses_to_overwrite_without_force_and_overwrites_with_force(tmp_path):
    src = write_png8(tmp_path / "a.png")
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    r = run_cli("denoise", src, "-o", target, "--lambda", "0.05", "--iters", "2", cwd=tmp_path)
    assert_usage_error(r, "--force", str(target))
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out.png"]

    r = run_cli("denoise", src, "-o", target, "--lambda", "0.05", "--iters", "2", "--force", cwd=tmp_path)
    assert_ok(r)
    out = read_back(target)
    assert out.dtype == np.uint8 and out.shape == (H, W)


@pytest.mark.parametrize("where", ["input file", "input folder", "input folder, relative"])
def test_never_overwrites_an_input_even_with_force(tmp_path, where):
    src_dir = tmp_path / "scans"
    src_dir.mkdir()
    src = write_png8(src_dir / "a.png")
    original = src.read_bytes()
    if where == "input file":
        args = (src, "-o", src)
    elif where == "input folder":
        args = (src, "-o", src_dir)
    else:  # the same folder spelled differently
        args = ("scans", "-o", "./scans/../scans")
    r = run_cli("denoise", *args, "--lambda", "0.05", "--iters", "2", "--force", cwd=tmp_path)
    assert_usage_error(r, "input")
    assert src.read_bytes() == original
    assert sorted(p.name for p in src_dir.iterdir()) == ["a.png"]


# ---------------------------------------------------------------------------
# user errors: exit 2, one line, no traceback, no output left behind
# ---------------------------------------------------------------------------


def _missing_input(tmp_path):
    return ("denoise", tmp_path / "nope.png", "-o", tmp_path / "out", "--lambda", "0.05"), ("nope.png",)


def _garbage_png(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a PNG file\n" * 5)
    return ("denoise", bad, "-o", tmp_path / "out", "--lambda", "0.05"), ("bad.png",)


def _truncated_png(tmp_path):
    good = write_png8(tmp_path / "whole.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(good[: len(good) // 2])
    return ("denoise", cut, "-o", tmp_path / "out", "--lambda", "0.05"), ("cut.png",)


def _negative_lambda(tmp_path):
    src = write_png8(tmp_path / "a.png")
    return ("denoise", src, "-o", tmp_path / "out", "--lambda", "-0.1"), ("--lambda",)


def _output_parent_is_a_file(tmp_path):
    src = write_png8(tmp_path / "a.png")
    (tmp_path / "out").write_text("a file, not a folder")
    return ("denoise", src, "-o", tmp_path / "out" / "a.png", "--lambda", "0.05"), ("-o",)


def _missing_weights(tmp_path):
    src = write_png8(tmp_path / "a.png")
    return ("denoise", src, "-o", tmp_path / "out", "--weights", tmp_path / "nope.safetensors"), ("--weights",)


USER_ERRORS = {
    "missing input": _missing_input,
    "garbage png": _garbage_png,
    "truncated png": _truncated_png,
    "negative lambda": _negative_lambda,
    "output parent is a file": _output_parent_is_a_file,
    "missing weights": _missing_weights,
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_user_error(tmp_path, case):
    args, needles = USER_ERRORS[case](tmp_path)
    inputs_before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    r = run_cli(*args, "--iters", "2", cwd=tmp_path)
    assert_usage_error(r, *needles)
    assert r.stdout.strip() == ""
    out = tmp_path / "out"
    if out.is_dir():
        assert_no_output_files(out)
    # nothing else appeared, nothing changed
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == inputs_before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) in ([], ["out"])


def test_bad_file_in_a_folder_leaves_no_partial_file(tmp_path):
    """A folder whose second image is truncated: exit 2; the output folder holds no
    temporary or half-written file (an earlier image's finished output may stay)."""
    src = tmp_path / "in"
    src.mkdir()
    write_png8(src / "a.png")
    good = write_png8(tmp_path / "whole.png").read_bytes()
    (src / "b.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    r = run_cli("denoise", src, "-o", out, "--lambda", "0.05", "--iters", "2", cwd=tmp_path)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("tvfast: error:") and "b.png" in last
    assert r.stderr.count("tvfast: error:") == 1
    assert hidden_files(out) == []
    assert "b.png" not in {p.name for p in out.iterdir()}
    for p in out.iterdir():  # whatever is there is complete
        assert read_back(p).shape == (H, W)


def test_float_npy_to_png_output(tmp_path):
    """A float .npy input written as PNG: an encoded PNG, or a one-line error — never a traceback."""
    src = write_npy(tmp_path / "a.npy")
    target = tmp_path / "out" / "a.png"
    r = run_cli("denoise", src, "-o", target, "--lambda", "0.05", "--iters", "2", cwd=tmp_path)
    if r.returncode == 2:
        assert_usage_error(r)
        assert_no_output_files(target.parent)
        return
    assert_ok(r)
    out = read_back(target)
    assert out.shape == (H, W) and np.issubdtype(out.dtype, np.integer)


def test_cuda_device_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    src = write_png8(tmp_path / "a.png")
    r = run_cli("denoise", src, "-o", tmp_path / "out", "--lambda", "0.05", "--iters", "2",
                "--device", "cuda", cwd=tmp_path)  # fmt: skip
    assert_usage_error(r, "--device")
    assert_no_output_files(tmp_path / "out")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cuda_device_without_cuda_for_train_and_evaluate(tmp_path, command):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    folder = tmp_path / "images"
    folder.mkdir()
    write_png8(folder / "a.png")
    r = run_cli(command, "--data", folder, "--out", tmp_path / "out", "--device", "cuda", cwd=tmp_path)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tvfast {command}: error: --device cuda"), r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("output", ["out.xyz", "result.pgn"])
def test_output_with_an_unknown_suffix_is_an_error(tmp_path, output):
    src = write_png8(tmp_path / "a.png")
    r = run_cli("denoise", src, "-o", tmp_path / output, "--lambda", "0.05", "--iters", "2", cwd=tmp_path)
    line = assert_usage_error(r, output, "unknown image suffix", ".png", ".tiff")
    assert "trailing '/'" in line
    assert not (tmp_path / output).exists()


def test_output_folder_with_a_dot_needs_a_trailing_slash(tmp_path):
    src = write_png8(tmp_path / "a.png")
    r = run_cli("denoise", src, "-o", f"{tmp_path / 'run.v2'}/", "--lambda", "0.05", "--iters", "2", cwd=tmp_path)
    assert_ok(r)
    assert (tmp_path / "run.v2" / "a.png").is_file()


# ---------------------------------------------------------------------------
# volumes and sequences (--volume)
# ---------------------------------------------------------------------------


def test_volume_npy_with_a_scalar_lambda_equals_the_3d_op(tmp_path):
    import torch

    import tvfast

    vol = noisy((5, 12, 14), seed=3).astype(np.float32)
    np.save(tmp_path / "v.npy", vol)
    r = run_cli("denoise", tmp_path / "v.npy", "-o", tmp_path / "out.npy", "--volume", "--lambda", "0.05",
                "--iters", ITERS, "--save-lambda", cwd=tmp_path)
    assert_ok(r)
    out = np.load(tmp_path / "out.npy")
    expected = tvfast.pdhg(torch.from_numpy(vol)[None, None], 0.05, int(ITERS))[0, 0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.load(tmp_path / "out_lambda.npy").shape == (1, 5, 12, 14)


def test_volume_multipage_tiff_keeps_its_type_and_takes_a_three_channel_map(tmp_path):
    import tifffile

    vol = np.rint(noisy((4, 10, 9), seed=4) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "seq.tif", vol, photometric="minisblack")
    lam = np.full((3, 4, 10, 9), 0.03, np.float32)
    lam[0] = 0.1  # stronger along time
    np.save(tmp_path / "lam.npy", lam)
    r = run_cli("denoise", tmp_path / "seq.tif", "-o", tmp_path / "out", "--volume", "--lambda-map",
                tmp_path / "lam.npy", "--iters", ITERS, cwd=tmp_path)
    assert_ok(r)
    out = tifffile.imread(tmp_path / "out" / "seq.tif")
    assert out.shape == vol.shape and out.dtype == np.uint16


@pytest.mark.parametrize("extra, needles", [
    ((), ("--volume", "3-D")),
    (("--lambda", "0.05", "--compare"), ("--compare",)),
])
def test_volume_usage_errors(tmp_path, extra, needles):
    np.save(tmp_path / "v.npy", noisy((3, 6, 7), seed=1).astype(np.float32))
    r = run_cli("denoise", tmp_path / "v.npy", "-o", tmp_path / "out", "--volume", *extra, "--iters", "2",
                cwd=tmp_path)
    assert_usage_error(r, *needles)
    assert_no_output_files(tmp_path / "out")


def test_volume_with_a_3d_model_and_a_2d_model_refused(tmp_path):
    import torch

    from tvfast.models.lambda_net import LambdaNet
    from tvfast.models.unet import UNet

    torch.manual_seed(0)
    LambdaNet(UNet(base_channels=4, depth=2, spatial_dims=3), n_iter=4).save_pretrained(tmp_path / "m3d.safetensors")
    np.save(tmp_path / "v.npy", noisy((4, 12, 10), seed=2).astype(np.float32))
    r = run_cli("denoise", tmp_path / "v.npy", "-o", tmp_path / "out.npy", "--volume", "--weights",
                tmp_path / "m3d.safetensors", "--iters", "4", "--save-lambda", cwd=tmp_path)
    assert_ok(r)
    assert np.load(tmp_path / "out.npy").shape == (4, 12, 10)
    assert np.load(tmp_path / "out_lambda.npy").shape == (3, 4, 12, 10)
    from tvfast.models.pretrained import pretrained_weights_path

    r = run_cli("denoise", tmp_path / "v.npy", "-o", tmp_path / "out2.npy", "--volume", "--weights",
                pretrained_weights_path(), "--iters", "4", cwd=tmp_path)
    assert_usage_error(r, "not a 3-D model")


def test_volume_inputs_are_all_checked_before_anything_is_written(tmp_path):
    import tifffile

    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", noisy((3, 8, 9), seed=1).astype(np.float32))
    np.save(folder / "b.npy", noisy((8, 9), seed=2).astype(np.float32))  # 2-D: not a volume
    r = run_cli("denoise", folder, "-o", tmp_path / "out", "--volume", "--lambda", "0.05", "--iters", "2", cwd=tmp_path)
    assert_usage_error(r, "b.npy", "(D, H, W)")
    assert_no_output_files(tmp_path / "out")
    rgb = np.zeros((8, 9, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    r = run_cli("denoise", tmp_path / "rgb.tif", "-o", tmp_path / "o2", "--volume", "--lambda", "0.05", cwd=tmp_path)
    assert_usage_error(r, "rgb.tif")
    r = run_cli("denoise", folder / "a.npy", "-o", tmp_path / "x.png", "--volume", "--lambda", "0.05", cwd=tmp_path)
    assert_usage_error(r, "x.png", ".npy")
    assert not (tmp_path / "x.png").exists()


def test_volume_flag_on_a_2d_image_names_the_file(tmp_path):
    src = write_png8(tmp_path / "a.png")
    r = run_cli("denoise", src, "-o", tmp_path / "out", "--volume", "--lambda", "0.05", "--iters", "2", cwd=tmp_path)
    assert_usage_error(r, "a.png")


# ---------------------------------------------------------------------------
# the shipped model
# ---------------------------------------------------------------------------


def test_denoise_with_the_shipped_model(tmp_path):
    from tvfast.models.pretrained import pretrained_weights_path

    assert pretrained_weights_path().is_file(), f"shipped weights missing: {pretrained_weights_path()}"
    src = write_png8(tmp_path / "a.png")
    target = tmp_path / "out" / "a.png"
    r = run_cli("denoise", src, "-o", target, "--iters", ITERS, "--save-lambda", cwd=tmp_path)
    assert_ok(r)
    out = read_back(target)
    assert out.dtype == np.uint8 and out.shape == (H, W)
    lam = np.load(tmp_path / "out" / "a_lambda.npy")
    assert lam.shape == (H, W) and np.isfinite(lam).all() and (lam > 0).all()


# ---------------------------------------------------------------------------
# help
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [(), ("denoise",), ("demo",), ("bench",)], ids=["tvfast", "denoise", "demo", "bench"])
def test_help_shows_an_example(tmp_path, command):
    r = run_cli(*command, "--help", cwd=tmp_path)
    assert_ok(r)
    assert r.stdout.startswith("usage: tvfast")
    assert re.search(r"^examples?:", r.stdout, re.MULTILINE | re.IGNORECASE), r.stdout
    sub = command[0] if command else r"(denoise|demo|bench)"
    assert re.search(rf"^\s+tvfast {sub}\b", r.stdout, re.MULTILINE), r.stdout


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_help_of_forwarded_commands(tmp_path, command):
    r = run_cli(command, "--help", cwd=tmp_path)
    assert_ok(r)
    assert f"usage: tvfast {command}" in r.stdout


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_writes_results_and_figures(tmp_path, tiny_weights):
    from tvfast.training.demo import bundled_images

    out = tmp_path / "demo"
    r = run_cli("demo", "-o", out, "--weights", tiny_weights, "--iters", "4", cwd=tmp_path, timeout=600)
    assert_ok(r)
    images = bundled_images()
    assert len(images) == 3
    results = (out / "results.md").read_text(encoding="utf-8")
    assert "| image | noisy | best scalar λ (oracle) | learned Λ map | gain |" in results
    for image in images:
        assert (out / f"{image.stem}_compare.png").is_file()
        row = [line for line in results.splitlines() if line.startswith(f"| {image.name} |")]
        assert len(row) == 1, results
        assert row[0] in r.stdout  # the same table is printed
    assert len(list(out.glob("*_compare.png"))) == 3
    assert "| image |" in r.stdout


def test_mri_demo_compares_zero_filled_best_scalar_and_learned(tmp_path):
    """tvfast demo --task mri4x: the shipped MRI model against the oracle scalar on simulated k-space."""
    from tvfast.training.demo import bundled_images

    out = tmp_path / "mri"
    r = run_cli("demo", "--task", "mri4x", "-o", out, "--iters", "4", cwd=tmp_path, timeout=600)
    assert_ok(r)
    results = (out / "results.md").read_text(encoding="utf-8")
    assert "| image | zero-filled | best scalar λ (oracle) | learned Λ map | gain |" in results
    for image in bundled_images():
        assert (out / f"{image.stem}_mri_compare.png").is_file() and (out / f"{image.stem}_mri_lambda.png").is_file()
        row = [line for line in results.splitlines() if line.startswith(f"| {image.name} |")]
        assert len(row) == 1 and row[0] in r.stdout
        start, scalar = (float(cell.split("/")[0]) for cell in row[0].split("|")[2:4])
        assert scalar > start  # the oracle beats zero-filling
    r = run_cli("demo", "--task", "mri4x", "-o", tmp_path / "bad", "--weights", tmp_path / "none.safetensors",
                cwd=tmp_path)
    assert r.returncode == 2 and "--weights" in r.stderr


@pytest.mark.slow
def test_bench_table_rows(capsys):
    """`tvfast bench` prints the forward and forward+backward rows, each naming the machine (tiny sizes here)."""
    from tvfast.cli.bench import machine_name, print_table

    print_table(size=24, n_iter=4, rounds=1)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "ms" in line]
    assert len(rows) == 2, out
    for row, label in zip(rows, ("forward 24² B=1 T=4", "forward+backward 24² B=1 T=4")):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == label and cells[1] == machine_name(), row
        reference, fast = (float(c.removesuffix(" ms")) for c in cells[2:4])  # rounded to 0.1 ms
        shown = float(re.fullmatch(r"(\d+\.\d)× faster", cells[4]).group(1))
        low, high = (reference - 0.05) / (fast + 0.05), (reference + 0.05) / max(fast - 0.05, 1e-9)
        assert low - 0.05 <= shown <= high + 0.05, row  # the ratio of the two medians shown


def test_bench_rejects_a_bad_size():
    from tvfast.cli.bench import speed_rows

    with pytest.raises(ValueError, match="size"):
        speed_rows(0, 1, 4, 1)


# ---------------------------------------------------------------------------
# optional packages (extras) and the compile decision of a job
# ---------------------------------------------------------------------------


def run_without(module, *args, cwd):
    """``tvfast ARGS`` in a subprocess in which importing ``module`` fails, as if it were not installed."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from tvfast.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=300)


@pytest.mark.parametrize("module, args, message", [
    ("matplotlib", ["demo", "-o", "demo"], 'tvfast demo needs matplotlib: pip install "tvfast[figures]"'),
    ("skimage", ["demo", "-o", "demo"], 'tvfast demo needs scikit-image: pip install "tvfast[eval]"'),
    ("matplotlib", ["denoise", "a.png", "-o", "out/", "--lambda", "0.1", "--compare"],
     'tvfast denoise --compare needs matplotlib: pip install "tvfast[figures]"'),
    ("matplotlib", ["denoise", "a.png", "-o", "out/", "--lambda", "0.1", "--save-lambda"],
     'tvfast denoise --save-lambda needs matplotlib: pip install "tvfast[figures]"'),
    ("skimage", ["train", "--help"], 'tvfast train needs scikit-image: pip install "tvfast[train]"'),
    ("skimage", ["evaluate", "--help"], 'tvfast evaluate needs scikit-image: pip install "tvfast[train]"'),
], ids=["demo-figures", "demo-eval", "compare", "save-lambda", "train", "evaluate"])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, module, args, message):
    write_png8(tmp_path / "a.png")
    r = run_without(module, *args, cwd=tmp_path)
    line = assert_usage_error(r)
    assert line == f"tvfast: error: {message}", line
    assert_no_output_files(tmp_path / "out")
    assert not (tmp_path / "demo").exists()


def test_denoise_needs_no_extra(tmp_path):
    """A plain denoise works with matplotlib and scikit-image both missing."""
    write_png8(tmp_path / "a.png")
    code = ("import sys; sys.modules['matplotlib'] = None; sys.modules['skimage'] = None\n"
            "from tvfast.cli.main import main\n"
            "sys.exit(main(['denoise', 'a.png', '-o', 'b.png', '--lambda', '0.1', '--iters', '8']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_ok(r)
    assert (tmp_path / "b.png").is_file()


def test_denoise_does_not_load_scipy_linalg_and_leaves_it_importable(tmp_path):
    """Numba's start-up check for SciPy's BLAS (0.2–0.3 s) is skipped by the command; SciPy still imports after."""
    pytest.importorskip("scipy.linalg")
    write_png8(tmp_path / "a.png", shape=(1024, 1024))  # work enough to start the fused kernels at the first solve
    code = ("import sys\n"
            "from tvfast.cli.main import main\n"
            "assert main(['denoise', 'a.png', '-o', 'b.png', '--lambda', '0.1', '--iters', '256']) == 0\n"
            "print('numba started:', 'numba.np.arraymath' in sys.modules)\n"
            "print('linalg loaded:', 'scipy.linalg' in sys.modules)\n"
            "import scipy.linalg, scipy.linalg.cython_blas\n"
            "print('det', scipy.linalg.det([[2.0, 0.0], [0.0, 3.0]]))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_ok(r)
    assert "numba started: True" in r.stdout
    assert "linalg loaded: False" in r.stdout
    assert "det 6.0" in r.stdout


def test_denoise_of_one_small_image_does_not_start_numba(tmp_path):
    """One 64² image is cheaper on the plain PyTorch loop than starting the fused kernels: Numba is never imported,
    and the image is the fused path's, bit for bit."""
    write_png8(tmp_path / "a.png")
    code = ("import sys\n"
            "from tvfast.cli.main import main\n"
            "assert main(['denoise', 'a.png', '-o', 'b.png', '--lambda', '0.1']) == 0\n"
            "print('numba imported:', 'numba' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_ok(r)
    assert "numba imported: False" in r.stdout
    import skimage.io
    import torch

    import tvfast

    z = torch.from_numpy(skimage.io.imread(tmp_path / "a.png").astype(np.float32) / 255.0)
    fused = tvfast.pdhg(z, 0.1, 256, backend="numba").numpy()
    written = skimage.io.imread(tmp_path / "b.png")
    assert np.array_equal(written, np.rint(np.clip(fused, 0, 1) * 255).astype(np.uint8))


def _denoise_folder_recording_calls(tmp_path, monkeypatch, tiny_weights, how: str, n_images: int) -> list[dict]:
    """Run ``tvfast denoise`` on a folder of ``n_images`` PNGs (``how``: --lambda or the tiny model); returns the
    keyword arguments of every ``tvfast.pdhg`` call it made."""
    import tvfast
    from tvfast.cli.main import main

    calls = []
    solve = tvfast.pdhg

    def recording_pdhg(*args, **kwargs):
        calls.append(kwargs)
        return solve(*args, **kwargs)

    monkeypatch.setattr(tvfast, "pdhg", recording_pdhg)
    (tmp_path / "in").mkdir()
    for seed in range(n_images):
        write_png8(tmp_path / "in" / f"{seed}.png", seed=seed)
    how_args = ["--lambda", "0.05"] if how == "lambda" else ["--weights", str(tiny_weights)]
    assert main(["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--iters", "4", *how_args]) == 0
    return calls


@pytest.mark.parametrize("how", ["lambda", "model"])
def test_denoise_rents_the_plain_loop_then_starts_the_fused_kernels(tmp_path, monkeypatch, tiny_weights, how):
    """A folder's solves run on the plain loop until their estimated time would exceed the start of the fused
    kernels, then on the fused kernels (tvfast.solver.start_policy)."""
    from tvfast.solver import fused, start_policy

    monkeypatch.setattr(fused, "started", lambda: False)  # as in a new process (earlier tests started them here)
    rent = H * W * 4 * start_policy.PLAIN_S_PER_PIXEL_ITERATION[2]
    monkeypatch.setattr(start_policy, "START_S", 2.5 * rent)  # two images' rent fit, the third's does not
    calls = _denoise_folder_recording_calls(tmp_path, monkeypatch, tiny_weights, how, 4)
    assert [c.get("backend") for c in calls] == ["torch", "torch", "auto", "auto"]


@pytest.mark.parametrize("how", ["lambda", "model"])
def test_denoise_makes_the_default_call(tmp_path, monkeypatch, tiny_weights, how):
    """Every solve of a job makes no compile request (the backend is the job's, tvfast.solver.start_policy)."""
    calls = _denoise_folder_recording_calls(tmp_path, monkeypatch, tiny_weights, how, 2)
    assert [c.get("compile") for c in calls] == [None, None]


def test_isotropic_scalar_denoising(tmp_path):
    """--tv isotropic with --lambda writes what tvfast.pdhg(…, tv="isotropic") gives; with the model it is refused."""
    import torch

    import tvfast
    from tvfast.io.images import read_image

    src = write_npy(tmp_path / "a.npy")
    target = tmp_path / "a_iso.npy"
    assert_ok(run_cli("denoise", src, "-o", target, "--lambda", "0.05", "--iters", "20", "--tv", "isotropic",
                      cwd=tmp_path))
    z = torch.from_numpy(np.load(src))[None, None]
    expected = tvfast.pdhg(z, 0.05, 20, tv="isotropic")[0, 0].numpy()
    np.testing.assert_allclose(read_image(target).pixels, expected, rtol=0, atol=1e-6)
    assert_usage_error(run_cli("denoise", src, "-o", tmp_path / "b.npy", "--tv", "isotropic", cwd=tmp_path),
                       "--tv: only used with --lambda")
