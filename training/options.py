"""The trainer's options: the command line, the learning-rate recipes, the task's defaults, merging the options of
a resumed run with its checkpoint's, and the checks that turn bad options into one usage error each."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from tvfast.cli.parser import CommandParser
from tvfast.device import resolve_device
from tvfast.io.images import read_grayscale
from tvfast.models.precision import PRECISIONS
from tvfast.models.reconstruction_net import NORMALISATIONS
from tvfast.training.checkpoint import CHECKPOINT
from tvfast.training.data import list_images
from tvfast.training.sequences import VolumeFolderDataset
from tvfast.training.tasks import RECONSTRUCTION_TASKS, TASKS, task_spec

__all__ = ["RECIPES", "UsageError", "apply_recipe", "build_parser", "resumed_arguments", "explicit_options",
           "resolve_task_defaults", "check_arguments"]


class UsageError(ValueError):
    """A run's options contradict each other or its checkpoint: reported as one usage error (exit 2)."""


# The learning-rate recipes of --recipe: "best" won the ablation of experiments/training_log.md §1 and trained the
# shipped model; "original" is the recipe of the work this project started from (constant 1e-4, no warm-up).
RECIPES: dict[str, dict[str, float | str]] = {
    "best": {"lr": 1e-3, "lr_schedule": "cosine", "warmup_epochs": 5.0},
    "original": {"lr": 1e-4, "lr_schedule": "constant", "warmup_epochs": 0.0},
}
# Recipes renamed since checkpoints were written with them (``--recipe seed`` read like ``--seed``).
_RENAMED_RECIPES = {"seed": "original"}
RECIPE_OPTIONS = ("lr", "lr_schedule", "warmup_epochs")

_RECIPES_HELP = """recipes (--recipe; --lr, --lr-schedule and --warmup-epochs override single values):
  best   --lr-schedule cosine --lr 1e-3 --warmup-epochs 5     the shipped model's recipe (experiments/training_log.md)
  original --lr-schedule constant --lr 1e-4 --warmup-epochs 0  the original work's recipe"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, except ``None`` (an option that is off, or taken from --recipe)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def apply_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Fill ``lr``, ``lr_schedule`` and ``warmup_epochs`` left at ``None`` from ``RECIPES[args.recipe]``.

    Values given explicitly (not ``None``) are kept: they override the recipe.
    Returns ``args`` (changed in place).
    """
    if args.recipe not in RECIPES:
        raise ValueError(f"recipe: expected one of {', '.join(RECIPES)}, got {args.recipe!r}")
    for key, value in RECIPES[args.recipe].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the trainer."""
    p = CommandParser(
        prog="tvfast train",
        description="Train the regularisation-map U-Net through unrolled PDHG (TV denoising).",
        epilog=_RECIPES_HELP,
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--task", choices=tuple(TASKS), default="denoise",
                   help="; ".join(f"{name}: {spec.description}" for name, spec in TASKS.items()).replace("%", "%%"))
    g.add_argument("--data", required=True, help="folder of training images (PNG/JPEG/TIFF)")
    g.add_argument("--val", default=None, help="folder of validation images (fixed noise)")
    g.add_argument("--size", type=int, default=None,
                   help="images are centre-cropped and resized to SIZE×SIZE (0: full resolution, as read); default: "
                        "the size the task is evaluated at (256; ct60 128, sequences 64)")
    g.add_argument("--patch-size", type=int, default=None, help="random training crops of this size")
    g.add_argument("--noise", choices=("relative", "absolute"), default="relative",
                   help="z = x + s·std(x)·n (relative) or z = x + s·n (absolute)")
    g.add_argument("--noise-min", type=float, default=None,
                   help="lower end of s ~ U[min, max] (default: 0.1 for denoise, 0.02 for mri4x, 0.01 for ct60)")
    g.add_argument("--noise-max", type=float, default=None,
                   help="upper end of s ~ U[min, max] (default: 0.5 for denoise, 0.1 for mri4x, 0.04 for ct60)")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--augment", action="store_true",
                   help="random flips and 90° rotations of the training images")
    g.add_argument("--sequences", action="store_true",  # the same as --task sequences
                   help="train the dynamic model (3-D LambdaNet: maps Λ_t and Λ_xy, 3-D TV) on (x, y, t) sequences "
                        "generated from the images in --data by a seeded breathing-like motion (with --volume: "
                        "ready-made sequences); use with e.g. --size 64 --base-channels 16 --iters 128")
    g.add_argument("--volume", action="store_true",
                   help="with --sequences: every file in --data and --val is one ready-made (D, H, W) sequence, "
                        "a .npy or a multi-page TIFF (D = time), as for 'tvfast denoise --volume'; whether a file "
                        "is a sequence is said by this flag, never guessed from its shape")
    g.add_argument("--frames", type=int, default=16,
                   help="frames per sequence (with --sequences; with --volume a window of consecutive frames)")
    g.add_argument("--pool-time", action="store_true", help="the 3-D U-Net also pools along time (--sequences)")

    g = p.add_argument_group("sample variation (reconstruction tasks; training samples only, all off by default)")
    g.add_argument("--synthetic-fraction", type=float, default=0.0, metavar="F",
                   help="replace each training image with probability F by a synthetic dead-leaves image of the "
                        "same size (training/synthetic.py), resized, cropped and flipped like the others")
    g.add_argument("--resize-range", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="resize each training image so that its shorter side is S ~ U{LOW..HIGH} pixels before "
                        "the --patch-size crop (a zoom by S/--size; all crops keep --patch-size, so batches "
                        "stay one size); needs --patch-size <= LOW")
    g.add_argument("--background-max", type=float, default=0.0, metavar="B",
                   help="set everything outside a random ellipse to 0, a fraction beta ~ U[0, B] of each "
                        "training sample (an object on an empty background, as in MRI); 0 <= B < 1")
    g.add_argument("--intensity-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="multiply each clean training image by a ~ U[LOW, HIGH], 0 < LOW <= HIGH <= 1 (with "
                        "relative noise and the scale-equivariant model this only reweighs samples in the loss)")
    g.add_argument("--centre-fraction", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="mri4x: draw the fully sampled centre fraction of each training mask from U[LOW, HIGH] "
                        "(default: 0.08, the task's); 0 < LOW <= HIGH <= 0.25 (a 4x mask samples a quarter of "
                        "the rows, the centre included)")

    g = p.add_argument_group("model")
    g.add_argument("--iters", type=int, default=None, help="PDHG iterations T (default: 256; 128 for mri4x, ct60)")
    g.add_argument("--up-bound", type=float, default=0.0,
                   help="0: Λ = 0.1·softplus(o); b > 0: Λ = b·sigmoid(o)")
    g.add_argument("--directional", action="store_true",
                   help="two maps (vertical, horizontal differences); for mri4x they follow the row-wise aliasing")
    g.add_argument("--normalisation", choices=NORMALISATIONS, default="mean",
                   help="reconstruction models: the scale c of the start x0 that divides the U-Net's input and "
                        "multiplies Λ: the mean of |x0| or its 0.98 quantile (the shipped mri4x), which does "
                        "not depend on how much of the image is empty background; a new run's choice, also with "
                        "--init (a fine-tune may switch it); a resumed run keeps its checkpoint's")
    g.add_argument("--step-balance", type=float, default=1.0, metavar="B",
                   help="mri4x: PDHG steps tau = B*s, sigma = s/B (s = 0.99/sqrt(9)); 1: tau = sigma, 30 (the shipped "
                        "mri4x): near convergence at T = 256-512, also for small Λ; a new run's choice, also "
                        "with --init")
    g.add_argument("--pilot", type=float, default=None, metavar="KAPPA",
                   help="reconstruction tasks: the U-Net also sees a scalar-TV image solved with λ = KAPPA·c "
                        "(c: the scale of x0; docs/method.md §11), which shows the edges that aliasing hides; "
                        "with --init from a model without one, the new input channels start at zero weight, so "
                        "the run starts from that model's maps; a new run's choice")
    g.add_argument("--pilot-iters", type=int, default=64, metavar="N",
                   help="PDHG iterations of the --pilot solve (no gradient)")
    g.add_argument("--iters-range", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="reconstruction tasks: each training step solves with T ~ U{LOW..HIGH} PDHG iterations, "
                        "drawn from (--seed, epoch, step) so that resumed runs draw the same; validation and "
                        "the saved model keep --iters. A step costs about proportionally to T")
    g.add_argument("--tv", choices=("anisotropic", "isotropic"), default="anisotropic",
                   help="the TV of the solver (denoising model; isotropic takes one map, not --directional)")
    g.add_argument("--base-channels", type=int, default=32, help="U-Net width")
    g.add_argument("--depth", type=int, default=3, help="U-Net depth")
    g.add_argument("--normalize-input", action="store_true",
                   help="feed the U-Net (z - mean z) / std z per image")
    g.add_argument("--solve-pad", type=int, default=0,
                   help="reflect-pad images by this many pixels before the network and the solve, crop after "
                        "(0: the solver's periodic boundary)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="U-Net arithmetic: bf16 autocast (+ channels-last) where the hardware is faster with it "
                        "(auto), or forced; the solver, weights and Adam state are always float32")
    g.add_argument("--solver-backend", choices=("auto", "numba", "triton", "torch"), default="auto",
                   help="tvfast.pdhg backend (auto: Triton on CUDA, the fused CPU path on CPU)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=500, help="total number of epochs")
    g.add_argument("--batch-size", type=int, default=1, help="images per step (per process)")
    g.add_argument("--recipe", choices=tuple(RECIPES), default="best",
                   help="learning-rate recipe: best (cosine, peak 1e-3, 5 warm-up epochs) or original "
                        "(constant 1e-4); see below")
    g.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate, the peak with a schedule (default: the recipe's, 1e-3 / 1e-4)")
    g.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                   help="constant, or linear warm-up then cosine decay to 1%% of --lr at the last epoch "
                        "(default: the recipe's)")
    g.add_argument("--warmup-epochs", type=float, default=None,
                   help="linear warm-up length in epochs (default: the recipe's, 5 / 0)")
    g.add_argument("--seed", type=int, default=42, help="seed of weights, sample order and noise")
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap on steps per epoch")
    g.add_argument("--time-limit-min", type=float, default=None,
                   help="stop cleanly (with a checkpoint) after this many minutes")
    g.add_argument("--time-budget-min", type=float, default=None,
                   help="fit the run into this many minutes: after the second epoch the number of epochs "
                        "(and so the cosine horizon) is fixed from the measured epoch time, at most --epochs; "
                        "also the time limit unless --time-limit-min is given. With --resume the budget counts "
                        "from the restart and the epoch count is fitted again, which extends a finished run")

    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/train", help="output folder")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue from CKPT (default: OUT/last.pt)")
    g.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start a new run from the weights of a model file of the same kind and shape (.safetensors, "
                        "e.g. OUT/best.safetensors of another run), for fine-tuning with other sample options; "
                        "the optimizer and schedule start afresh")
    g.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    g.add_argument("--log-every", type=int, default=1, help="TensorBoard train-loss interval (steps)")
    g.add_argument("--checkpoint-every", type=int, default=1,
                   help="write last.pt every N epochs (and always at the end, on the time limit and on SIGTERM)")
    return p


# ---------------------------------------------------------------- resuming
# Options that define the stream of training samples: a resumed run must use the checkpoint's
# values (a different one would break exact resumption), so giving another value is an error.
SAMPLE_OPTIONS = ("task", "batch_size", "max_steps_per_epoch", "seed", "size", "patch_size", "noise", "noise_min",
                  "noise_max", "augment", "sequences", "volume", "frames", "synthetic_fraction", "resize_range",
                  "background_max", "intensity_range", "centre_fraction", "iters_range")
# Options of the reconstruction tasks only (ReconstructionNet and TaskDataset).
RECONSTRUCTION_OPTIONS = ("synthetic_fraction", "resize_range", "background_max", "intensity_range",
                          "centre_fraction", "normalisation", "iters_range", "step_balance", "pilot",
                          "pilot_iters")
# Options of the optimisation that a resumed run takes from the checkpoint unless given again.
SCHEDULE_OPTIONS = ("recipe", "lr", "lr_schedule", "warmup_epochs", "precision", "solver_backend")


def resumed_arguments(args: argparse.Namespace, saved: dict, explicit: set[str]) -> argparse.Namespace:
    """``args`` for a resumed run: sample options from the checkpoint (an explicit different value is an
    error), schedule options from the checkpoint unless given on the command line (``explicit``).

    An explicit ``--recipe`` brings its own learning-rate values: then ``--lr``, ``--lr-schedule`` and
    ``--warmup-epochs`` come from that recipe unless given too, not from the checkpoint. Call
    :func:`apply_recipe` on the result."""
    merged = argparse.Namespace(**vars(args))
    if saved.get("sequences") and saved.get("task", "denoise") == "denoise":  # before --task sequences existed
        saved = {**saved, "task": "sequences"}
    for key in SAMPLE_OPTIONS:
        if key not in saved:
            continue
        if key in explicit and getattr(args, key) != saved[key]:
            raise UsageError(f"--{key.replace('_', '-')} {getattr(args, key)} differs from the checkpoint's "
                             f"{saved[key]}; a resumed run keeps the stream of samples it started with")
        setattr(merged, key, saved[key])
    for key in SCHEDULE_OPTIONS:
        if key in saved and key not in explicit and not (key in RECIPE_OPTIONS and "recipe" in explicit):
            setattr(merged, key, saved[key])
    merged.recipe = _RENAMED_RECIPES.get(merged.recipe, merged.recipe)  # a checkpoint of before the rename
    return merged


def explicit_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Destinations of the options that appear in ``argv``."""
    given = set()
    for action in parser._actions:
        for flag in action.option_strings:
            if any(a == flag or a.startswith(flag + "=") for a in argv):
                given.add(action.dest)
    return given


def resolve_task_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options whose default depends on ``--task`` (noise range, T, image size; :data:`TASKS`); returns
    ``args``.
    ``--sequences`` is the task ``sequences``."""
    if getattr(args, "sequences", False) and args.task == "denoise":
        args.task = "sequences"
    args.sequences = args.task == "sequences"
    spec = task_spec(args.task)
    low, high = spec.train_noise
    args.noise_min = low if args.noise_min is None else args.noise_min
    args.noise_max = high if args.noise_max is None else args.noise_max
    if args.iters is None:
        args.iters = spec.n_iter
    if args.size is None:
        args.size = spec.size
    return args


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn missing folders / files and bad numbers into clean usage errors."""
    for flag, folder in (("--data", args.data), ("--val", args.val)):
        if folder is not None:
            try:
                list_images(folder)
            except (OSError, ValueError) as exc:
                parser.error(f"{flag}: {exc}")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    if args.solver_backend == "triton" and device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error("--solver-backend triton needs a CUDA device (or TRITON_INTERPRET=1 for tests)")
    if args.resume is not None:
        ckpt = Path(args.out) / CHECKPOINT if args.resume == "auto" else Path(args.resume)
        if not ckpt.is_file():
            parser.error(f"--resume: checkpoint not found: {str(ckpt)!r}")
    if args.init is not None and not Path(args.init).is_file():
        parser.error(f"--init: weights not found: {args.init!r}")
    if args.tv == "isotropic" and args.directional:
        parser.error("--tv isotropic takes one Λ map: it does not combine with --directional")
    if args.checkpoint_every < 1:
        parser.error(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            parser.error(f"{flag} must be positive, got {value}")
    if args.iters < 0:
        parser.error(f"--iters must be >= 0, got {args.iters}")
    if args.size < 0:
        parser.error(f"--size must be positive (or 0 for full resolution), got {args.size}")
    if args.size == 0 and args.patch_size is None and args.batch_size > 1:
        parser.error("--size 0 (full resolution) keeps each image's own size: use --batch-size 1 or --patch-size")
    if args.size == 0 and args.patch_size is not None:
        for path in list_images(args.data):
            try:
                height, width = read_grayscale(path).shape
            except (OSError, ValueError) as exc:
                parser.error(f"--data: {exc}")
            if min(height, width) < args.patch_size:
                parser.error(f"--patch-size {args.patch_size} exceeds image {str(path)!r} of size {height}×{width}")
    spec = task_spec(args.task)
    if spec.model_kind == "reconstruction":
        defaults = build_parser().parse_args(["--data", "x"])
        for key in ("up_bound", "normalize_input", "solve_pad", "tv"):
            if getattr(args, key) != getattr(defaults, key):
                parser.error(f"--{key.replace('_', '-')} is for the denoising model; it does not apply with "
                             f"--task {args.task}")
    if spec.model_kind == "reconstruction":
        _check_variation(parser, args)
    else:
        defaults = build_parser().parse_args(["--data", "x"])
        for key in RECONSTRUCTION_OPTIONS:
            if getattr(args, key) != getattr(defaults, key):
                parser.error(f"--{key.replace('_', '-')} is for the reconstruction tasks "
                             f"({', '.join(RECONSTRUCTION_TASKS)}); it does not apply with --task {args.task}")
    if spec.model_kind == "lambdanet3d":
        defaults = resolve_task_defaults(build_parser().parse_args(["--data", "x"]))
        for key in ("patch_size", "augment", "directional", "up_bound", "normalize_input", "solve_pad", "tv"):
            if getattr(args, key) != getattr(defaults, key):
                parser.error(f"--{key.replace('_', '-')} is for 2-D images; it does not apply with --sequences")
        if args.frames < 1:
            parser.error(f"--frames must be positive, got {args.frames}")
        if args.volume:
            for flag, folder in (("--data", args.data), ("--val", args.val)):
                if folder is not None:
                    try:  # every file's header: (D, H, W), at least --frames frames
                        VolumeFolderDataset(folder, size=None, frames=args.frames, train=False)
                    except (OSError, ValueError) as exc:
                        parser.error(f"{flag}: {exc}")
    elif args.volume:
        parser.error("--volume: ready-made (D, H, W) sequences train the dynamic model; add --sequences")
    if args.solve_pad < 0:
        parser.error(f"--solve-pad must be >= 0, got {args.solve_pad}")
    if args.warmup_epochs is not None and args.warmup_epochs < 0:
        parser.error(f"--warmup-epochs must be >= 0, got {args.warmup_epochs}")
    if args.lr is not None and not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    for flag, value in (("--time-limit-min", args.time_limit_min), ("--time-budget-min", args.time_budget_min)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be positive, got {value}")
    if args.max_steps_per_epoch is not None and args.max_steps_per_epoch < 1:
        parser.error("--max-steps-per-epoch must be >= 1")
    if not 0 <= args.noise_min <= args.noise_max:
        parser.error("need 0 <= --noise-min <= --noise-max")


def _check_variation(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The sample-variation options and --iters-range of a reconstruction task: one usage error each."""
    if not 0 <= args.synthetic_fraction <= 1:
        parser.error(f"--synthetic-fraction must be in [0, 1], got {args.synthetic_fraction:g}")
    if args.resize_range is not None:
        low, high = args.resize_range
        if args.patch_size is None:
            parser.error("--resize-range needs --patch-size (the crop that gives every sample of a batch one size)")
        if not args.patch_size <= low <= high:
            parser.error(f"--resize-range needs --patch-size <= LOW <= HIGH, got {low} {high} with --patch-size "
                         f"{args.patch_size}")
    if not 0 <= args.background_max < 1:
        parser.error(f"--background-max must be in [0, 1), got {args.background_max:g}")
    if args.intensity_range is not None:
        low, high = args.intensity_range
        if not 0 < low <= high <= 1:
            parser.error(f"--intensity-range needs 0 < LOW <= HIGH <= 1, got {low:g} {high:g}")
    if args.centre_fraction is not None:
        low, high = args.centre_fraction
        if args.task != "mri4x":
            parser.error(f"--centre-fraction is for the row masks of --task mri4x; it does not apply with "
                         f"--task {args.task}")
        if not 0 < low <= high <= 0.25:
            parser.error(f"--centre-fraction needs 0 < LOW <= HIGH <= 0.25, got {low:g} {high:g}")
    if not (math.isfinite(args.step_balance) and args.step_balance > 0):
        parser.error(f"--step-balance must be a finite number > 0, got {args.step_balance:g}")
    if args.step_balance != 1 and args.task != "mri4x":
        parser.error(f"--step-balance sets the MRI steps; it does not apply with --task {args.task}")
    if args.pilot is not None and not (math.isfinite(args.pilot) and args.pilot > 0):
        parser.error(f"--pilot must be a finite number > 0, got {args.pilot:g}")
    if args.pilot_iters < 1:
        parser.error(f"--pilot-iters must be >= 1, got {args.pilot_iters}")
    if args.pilot is None and args.pilot_iters != 64 and args.resume is None:
        parser.error("--pilot-iters sets the iterations of the --pilot solve: give --pilot too")
    if args.iters_range is not None:
        low, high = args.iters_range
        if not 1 <= low <= high:
            parser.error(f"--iters-range needs 1 <= LOW <= HIGH, got {low} {high}")
