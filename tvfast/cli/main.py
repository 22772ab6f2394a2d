"""The ``tvfast`` command line: denoise, demo, train, evaluate, bench.

User errors (missing or unreadable files, bad values, outputs that exist)
print one line ``tvfast: error: …`` and exit with status 2, no traceback;
so does a feature whose optional package is missing (the line names the
extra to install, see :mod:`tvfast.extras`). Heavy packages are imported by
the command that needs them, never by the parser: ``tvfast --help`` and
``tvfast denoise`` of an image load neither matplotlib nor scikit-image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tvfast.cli.parser import CommandParser
from tvfast.device import resolve_device
from tvfast.extras import MissingExtraError, missing_extra_message, require
from tvfast.models.precision import PRECISIONS

__all__ = ["main", "build_parser"]

_MAIN_EXAMPLES = """examples:
  tvfast demo                                   bundled X-rays: best scalar λ vs learned Λ map
  tvfast denoise scan.png -o scan_denoised.png  denoise with the shipped model
  tvfast train --data train/ --val val/ --out runs/x
  tvfast evaluate --data test/ --out eval/
  tvfast bench --quick
  tvfast models                                 the shipped models and what each is for"""

_DENOISE_EXAMPLES = """examples:
  tvfast denoise scan.png -o scan_denoised.png            learned Λ map (shipped model)
  tvfast denoise scans/ -o denoised/ --save-lambda --compare
  tvfast denoise scan.tif -o out/ --lambda 0.07           classic TV with scalar λ
  tvfast denoise scan.png -o out/ --lambda-map lam.npy    your own (H, W) or (2, H, W) map

Colour images are denoised channel by channel; outputs keep the input's
format and bit depth (8/16-bit PNG or TIFF, JPEG, float .npy).

What the shipped model is for: it was trained on grayscale chest X-rays
(relative Gaussian noise, s = 0.1–0.5) and beats the best scalar λ there.
On other kinds of images (natural photographs, micrographs, …) it can be
worse than a well-chosen scalar λ: use --lambda (classic TV), --lambda-map,
or a model trained on your own images with 'tvfast train' (--weights)."""

_BENCH_EXAMPLES = """examples:
  tvfast bench --quick            128², T = 64, 3 rounds
  tvfast bench                    256², T = 256, 5 rounds (the RESULTS.md rows)

Forward and forward+backward of tvfast.pdhg (the default call) against the reference
loop, in this process, on the same inputs; ratio of medians. Peak memory and
the training step: the benchmark suite in benchmarks/ (python -m pytest benchmarks)."""


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="tvfast", description="Total-variation denoising with learned per-pixel Λ maps.",
                     epilog=_MAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    fmt = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser("denoise", help="denoise image files", epilog=_DENOISE_EXAMPLES, formatter_class=fmt)
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (PNG, JPEG, TIFF, .npy)")
    d.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    how = d.add_mutually_exclusive_group()
    how.add_argument("--lambda", dest="lam", type=float, default=None, help="scalar λ (classic TV) instead of the model")
    how.add_argument("--lambda-map", default=None, help="Λ map file (.npy (H,W)/(2,H,W), or an image)")
    d.add_argument("--weights", default=None, help="a model from 'tvfast train' (.safetensors) instead of the shipped one")
    d.add_argument("--iters", type=int, default=256, help="PDHG iterations (default 256)")
    d.add_argument("--tv", choices=("anisotropic", "isotropic"), default=None,
                   help="the TV of --lambda / --lambda-map (default anisotropic; isotropic takes a one-channel map); "
                        "a model solves with its own")
    d.add_argument("--volume", action="store_true",
                   help="each input is one volume or (x, y, t) sequence: a (D, H, W) .npy or a multi-page TIFF, "
                        "denoised with 3-D TV (differences along D, H and W); use --lambda, a (D, H, W) or "
                        "(3, D, H, W) .npy --lambda-map, or --weights of a 3-D model")
    d.add_argument("--save-lambda", action="store_true", help="also write NAME_lambda.npy and NAME_lambda.png")
    d.add_argument("--compare", action="store_true", help="also write NAME_compare.png (input | output | Λ)")
    d.add_argument("--force", action="store_true", help="overwrite existing outputs (never inputs)")
    d.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    d.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="U-Net arithmetic: bf16 autocast where the hardware is faster with it (auto), "
                        "or forced; the solver is always float32")

    sub.add_parser("demo", help="the bundled chest X-rays: the best scalar λ beside the learned Λ map "
                                "(see tvfast demo --help)", add_help=False)
    sub.add_parser("train", help="train a Λ-map model (see tvfast train --help)", add_help=False)
    sub.add_parser("evaluate", help="evaluate against the best scalar λ (see tvfast evaluate --help)", add_help=False)

    sub.add_parser("models", help="list the shipped models (tvfast.pretrained(name)) and what each is for")

    b = sub.add_parser("bench", help="benchmark tvfast.pdhg against the reference loop",
                       epilog=_BENCH_EXAMPLES, formatter_class=fmt)
    b.add_argument("--quick", action="store_true", help="128², T = 64 instead of 256², T = 256")
    return parser


def _load_model(weights: str | None, device, precision: str = "auto"):
    import tvfast
    from tvfast.models.precision import resolve_precision

    if weights is None:
        model = tvfast.pretrained(device=device)
    else:
        from tvfast.models.lambda_net import LambdaNet

        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"--weights {path}: no such file")
        model = LambdaNet.load_pretrained(path, map_location=device, spatial_dims=2).eval()
    return model.set_precision(resolve_precision(precision, device))


def _start_numba_without_scipy_blas() -> None:
    """Import Numba's array support without its check for SciPy's BLAS, for a command that solves on the CPU.

    At start-up Numba imports ``scipy.linalg.cython_blas`` (when SciPy is
    installed, as scikit-image brings it) to know whether ``np.dot`` can be
    compiled: 0.2–0.3 s, a tenth of a ``tvfast denoise``, for linear algebra
    the solver never compiles. The command owns its process, so it lets that
    check fail (the module is hidden while Numba's array support is imported,
    then unhidden: SciPy itself imports normally afterwards). A library call
    never does this: ``tvfast.pdhg`` leaves Numba as the user configured it.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    sys.modules["scipy.linalg.cython_blas"] = None  # an import of it raises ImportError, before SciPy loads
    try:
        import numba.np.arraymath  # noqa: F401
    except ImportError:  # no Numba: the solver warns and takes its PyTorch path
        pass
    finally:
        del sys.modules["scipy.linalg.cython_blas"]


def _fused_start():
    """The command's ski-rental account for its CPU solves (:mod:`tvfast.solver.start_policy`).

    ``tvfast denoise`` knows it is a job of several solves: its first ones run
    on the plain PyTorch loop while their estimated time stays within what
    starting the fused kernels costs (one 256² image takes 50–65 ms that way,
    against half a second to start Numba), and the rest on the fused kernels,
    Numba imported then.
    """
    from tvfast.solver import fused
    from tvfast.solver.start_policy import FusedStart

    return FusedStart(fused.started(), on_start=_start_numba_without_scipy_blas)


def _cmd_denoise(args) -> int:
    from tvfast.cli.denoise import UsageError, denoise_job, load_lambda_map, plan_jobs

    if args.iters < 0:
        raise UsageError(f"--iters: expected a non-negative integer, got {args.iters}")
    if args.lam is not None and not args.lam >= 0:
        raise UsageError(f"--lambda: expected a non-negative number, got {args.lam}")
    sidecars = (("_lambda.npy", "_lambda.png") if args.save_lambda else ()) + (("_compare.png",) if args.compare else ())
    if args.volume:
        return _denoise_volumes(args)
    for flag, wanted in (("--save-lambda", args.save_lambda), ("--compare", args.compare)):
        if wanted:  # the Λ picture and the comparison figure are drawn with matplotlib
            require("matplotlib", f"tvfast denoise {flag}")
    jobs = plan_jobs(args.inputs, args.output, args.force, sidecars)
    device = resolve_device(args.device)
    start = _fused_start() if device.type == "cpu" else None
    lam_map = load_lambda_map(args.lambda_map) if args.lambda_map else None
    model = None
    if args.lam is None and lam_map is None:
        if args.tv is not None:
            raise UsageError("--tv: only used with --lambda / --lambda-map; a model solves with the TV it was "
                             "trained with")
        model = _load_model(args.weights, device, args.precision)
    elif args.weights:
        raise UsageError("--weights: only used with the learned model, not with --lambda / --lambda-map")
    if args.tv == "isotropic" and lam_map is not None and lam_map.shape[0] != 1:
        raise UsageError(f"--lambda-map: isotropic TV takes one map (H, W), got {lam_map.shape[0]} channels")
    progress = jobs
    if len(jobs) > 1:
        from tqdm import tqdm

        progress = tqdm(jobs, desc="denoise", unit="image")
    for job in progress:
        denoise_job(job, model=model, lam_value=args.lam, lam_map=lam_map, n_iter=args.iters,
                    save_lambda=args.save_lambda, compare=args.compare, device=device, tv=args.tv or "anisotropic",
                    start=start)
        if len(jobs) == 1:
            print(f"wrote {job.target}")
    return 0


def _denoise_volumes(args) -> int:
    """``tvfast denoise --volume``: each input file is one (D, H, W) volume or sequence."""
    import json

    from tvfast.cli.denoise import UsageError, denoise_volume, load_volume_lambda, plan_jobs
    from tvfast.models.files import pretrained_paths
    from tvfast.io.volumes import VOLUME_SUFFIXES, volume_shape

    if args.compare:
        raise UsageError("--compare: not available with --volume (use --save-lambda)")
    out = Path(args.output)
    if out.suffix and not args.output.endswith("/") and out.suffix.lower() not in VOLUME_SUFFIXES:
        raise UsageError(f"-o {args.output}: a volume is written as {', '.join(VOLUME_SUFFIXES)} (or give a folder)")
    device = resolve_device(args.device)
    start = _fused_start() if device.type == "cpu" else None
    lam_map = load_volume_lambda(args.lambda_map) if args.lambda_map else None
    jobs = plan_jobs(args.inputs, args.output, args.force, ("_lambda.npy",) if args.save_lambda else ())
    for job in jobs:  # every input is checked before anything is written
        shape = volume_shape(job.source)
        if lam_map is not None and tuple(lam_map.shape[1:]) != shape:
            raise UsageError(f"--lambda-map: map is {'×'.join(map(str, lam_map.shape[1:]))}, volume {job.source} "
                             f"is {'×'.join(map(str, shape))}")
    model = None
    if (args.lam is not None or lam_map is not None) and args.weights:
        raise UsageError("--weights: only used with a learned model, not with --lambda / --lambda-map")
    if args.tv is not None and args.lam is None and lam_map is None:
        raise UsageError("--tv: only used with --lambda / --lambda-map; a model solves with the TV it was trained with")
    if args.tv == "isotropic" and lam_map is not None and lam_map.shape[0] != 1:
        raise UsageError(f"--lambda-map: isotropic TV takes one map (D, H, W), got {lam_map.shape[0]} channels")
    if args.lam is None and lam_map is None:
        if args.weights is None:
            raise UsageError("--volume: the shipped model is 2-D; give --lambda, --lambda-map or --weights of a "
                             "3-D model")
        weights, config = pretrained_paths(args.weights)
        if not weights.is_file() or not config.is_file():
            raise FileNotFoundError(f"--weights {args.weights}: needs {weights.name} and {config.name}")
        try:
            fmt = json.loads(config.read_text())
        except ValueError:
            fmt = None
        if not isinstance(fmt, dict) or fmt.get("format") != "tvfast-lambdanet3d":
            raise UsageError(f"--weights {args.weights}: not a 3-D model (train one with tvfast train --sequences)")
        from tvfast.models.lambda_net import LambdaNet
        from tvfast.models.precision import resolve_precision

        try:
            model = LambdaNet.load_pretrained(args.weights, map_location=device, spatial_dims=3).eval()
        except Exception as exc:  # corrupt weights: one line, not a traceback
            raise UsageError(f"--weights {args.weights}: cannot load ({type(exc).__name__}: {exc})") from None
        model.set_precision(resolve_precision(args.precision, device))
    for job in jobs:
        denoise_volume(job.source, job.target, lam_value=args.lam, lam_map=lam_map, model=model,
                       n_iter=args.iters, device=device, save_lambda=args.save_lambda, tv=args.tv or "anisotropic",
                       start=start)
        print(f"wrote {job.target}")
    return 0


def _cmd_bench(args) -> int:
    from tvfast.cli.bench import print_table

    print_table(quick=args.quick)
    return 0


def _cmd_models(args) -> int:
    from tvfast.models.pretrained import pretrained_models

    for name, about in pretrained_models().items():
        print(f"{name}\n    {about}")
    return 0


# Commands that live in the training package (they read its task registry), and the extra named when a package they
# need is missing (None: the extra of that package, tvfast.extras.EXTRAS).
_PLUGIN_COMMANDS = {"train": "train", "evaluate": "train", "demo": None}


def _plugin_command(name: str):
    """The ``main(argv)`` registered for ``tvfast NAME`` in the entry-point group ``tvfast.commands``."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="tvfast.commands") if ep.name == name]
    if not found:
        raise SystemExit(f"tvfast: error: the '{name}' command is not installed (pip install -e . installs it)")
    try:
        return found[0].load()
    except ImportError as exc:  # a package of the [train] extra is missing: one line naming the extra
        third_party = exc.name and exc.name.split(".")[0] != "tvfast"
        if isinstance(exc, MissingExtraError) or (isinstance(exc, ModuleNotFoundError) and third_party):
            raise MissingExtraError(missing_extra_message(exc.name, f"tvfast {name}", _PLUGIN_COMMANDS[name]),
                                    name=exc.name) from None
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # train/evaluate/demo live in the training package, which depends on the core and not the other way
    # round: it registers them as entry points of the group "tvfast.commands" (pyproject.toml), and
    # they parse everything after the subcommand themselves.
    if argv and argv[0] in _PLUGIN_COMMANDS:
        try:
            command_main = _plugin_command(argv[0])
        except MissingExtraError as exc:
            print(f"tvfast: error: {exc}", file=sys.stderr)
            return 2
        return command_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    from tvfast.cli.denoise import UsageError
    from tvfast.io.images import ImageReadError

    command = {"denoise": _cmd_denoise, "bench": _cmd_bench, "models": _cmd_models}[args.command]
    try:
        return command(args)
    except (UsageError, ImageReadError, FileNotFoundError, PermissionError, ValueError, MissingExtraError) as exc:
        print("tvfast: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tvfast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
