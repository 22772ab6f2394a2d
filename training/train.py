"""Train ``LambdaNet`` end to end through the unrolled PDHG solver (SPEC section 6).

Objective, for clean images ``x`` and noisy ``z = x + s·std(x)·n``::

    min_Θ  E ‖ PDHG_T(z, Λ_Θ(z)) − x ‖² / N           (MSE, mean over pixels and batch)

with Adam (lr 1e-4), seed 42, T = 256 by default, ``s ~ U[0.1, 0.5]`` per
sample. Validation images get fixed noise (seeded per image); the best weights
are selected on mean validation PSNR.

Usage::

    python -m tvfast.training.train --data DATA/train --val DATA/val --out runs/x
    torchrun --nproc_per_node=2 -m tvfast.training.train --data ... (DDP)

Outputs in ``--out``:

* ``last.pt`` — checkpoint written atomically after every epoch (and when the
  time limit or SIGTERM stops a run): model, optimizer, position (epoch and
  step within it), best validation PSNR, history and RNG states (torch,
  numpy, python ``random``). ``--resume`` continues from it exactly.
* ``best.safetensors`` + ``best.json`` — weights with the best validation
  PSNR (the latest weights when no ``--val`` is given); load with
  ``LambdaNet.load_pretrained``.
* ``tensorboard/`` — train loss, validation PSNR/SSIM, an example Λ map.

Exact resumption: the order of samples in epoch ``e`` is a permutation seeded
by ``(seed, e)`` (``DistributedSampler``), the noise and crop of sample ``i``
in epoch ``e`` come from a generator seeded by ``(seed, e, i)``, and PDHG is
deterministic, so a run stopped after any step and resumed reproduces the
uninterrupted run (up to floating-point non-determinism of the backend).

Under ``torchrun`` each process trains on its shard (``DistributedSampler``)
with ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); validation is
sharded and reduced; only rank 0 writes logs and files.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from tvfast.precision import PRECISIONS, resolve_precision
from tvfast.training.atomic import atomic_write
from tvfast.training.data import ImageFolderDataset, list_images
from tvfast.training.metrics import psnr, ssim
from tvfast.training.model import LambdaNet
from tvfast.training.unet import UNet

__all__ = ["build_parser", "train", "main"]

CHECKPOINT = "last.pt"
BEST = "best.safetensors"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the trainer."""
    p = argparse.ArgumentParser(
        prog="tvfast train",
        description="Train the regularisation-map U-Net through unrolled PDHG (TV denoising).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="folder of training images (PNG/JPEG/TIFF)")
    g.add_argument("--val", default=None, help="folder of validation images (fixed noise)")
    g.add_argument("--size", type=int, default=256,
                   help="images are centre-cropped and resized to SIZE×SIZE (0: full resolution, as read)")
    g.add_argument("--patch-size", type=int, default=None, help="random training crops of this size")
    g.add_argument("--noise", choices=("relative", "absolute"), default="relative",
                   help="z = x + s·std(x)·n (relative) or z = x + s·n (absolute)")
    g.add_argument("--noise-min", type=float, default=0.1, help="lower end of s ~ U[min, max]")
    g.add_argument("--noise-max", type=float, default=0.5, help="upper end of s ~ U[min, max]")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--augment", action="store_true",
                   help="random flips and 90° rotations of the training images")

    g = p.add_argument_group("model")
    g.add_argument("--iters", type=int, default=256, help="PDHG iterations T")
    g.add_argument("--up-bound", type=float, default=0.0,
                   help="0: Λ = 0.1·softplus(o); b > 0: Λ = b·sigmoid(o)")
    g.add_argument("--directional", action="store_true", help="two maps (vertical, horizontal)")
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
    g.add_argument("--solver-backend", choices=("auto", "triton", "torch"), default="auto",
                   help="tvfast.pdhg backend (auto: Triton on CUDA, PyTorch on CPU)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=500, help="total number of epochs")
    g.add_argument("--batch-size", type=int, default=1, help="images per step (per process)")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (the peak, with a schedule)")
    g.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="constant, or linear warm-up then cosine decay to 1%% of --lr at the last epoch")
    g.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up length (epochs)")
    g.add_argument("--seed", type=int, default=42, help="seed of weights, sample order and noise")
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap on steps per epoch")
    g.add_argument("--time-limit-min", type=float, default=None,
                   help="stop cleanly (with a checkpoint) after this many minutes")
    g.add_argument("--time-budget-min", type=float, default=None,
                   help="fit the run into this many minutes: after the second epoch the number of epochs "
                        "(and so the cosine horizon) is fixed from the measured epoch time, at most --epochs; "
                        "also the time limit unless --time-limit-min is given")

    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/train", help="output folder")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue from CKPT (default: OUT/last.pt)")
    g.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    g.add_argument("--log-every", type=int, default=1, help="TensorBoard train-loss interval (steps)")
    g.add_argument("--checkpoint-every", type=int, default=1,
                   help="write last.pt every N epochs (and always at the end, on the time limit and on SIGTERM)")
    return p


# ---------------------------------------------------------------- helpers
class _Dist:
    """Process-group facts; a single process when not launched by torchrun."""

    def __init__(self, device_arg: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_arg == "auto":
            device_arg = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device_arg)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank if self.world > 1 else torch.cuda.current_device())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.device = device
        self.initialised_here = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self.initialised_here = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.initialised_here:
            dist.destroy_process_group()


def _rng_state() -> dict:
    """RNG states as tensors / plain Python objects (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _validate(model: LambdaNet, dataset: ImageFolderDataset | None, env: _Dist) -> dict:
    """Mean PSNR / SSIM of ``model`` on the (sharded) validation set."""
    if dataset is None:
        return {}
    model.eval()
    sums = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for i in range(env.rank, len(dataset), env.world):
            item = dataset[i]
            z = item["noisy"][None].to(env.device)
            x = model(z)
            sums[0] += psnr(item["clean"], x)
            sums[1] += ssim(item["clean"], x)
            sums[2] += 1
    model.train()
    total_psnr, total_ssim, count = env.all_sum(sums)
    return {"psnr": total_psnr / count, "ssim": total_ssim / count}


def _lambda_image(model: LambdaNet, dataset: ImageFolderDataset, device) -> torch.Tensor:
    """Λ of the first validation image scaled to [0, 1] for TensorBoard, ``(1, H, W)``
    (directional maps side by side: vertical | horizontal)."""
    model.eval()
    with torch.no_grad():
        lam = model.lambda_map(dataset[0]["noisy"][None].to(device))[0].float().cpu()
    model.train()
    lam = torch.cat(list(lam), dim=-1)[None]
    return lam / lam.max().clamp_min(1e-12)


def _save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {str(path)!r}")
    # weights_only: tensors and plain containers only — no arbitrary unpickling.
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- training
def train(args: argparse.Namespace) -> dict:
    """Run (or resume) training as configured by ``args`` (see :func:`build_parser`).

    Returns
    -------
    dict
        ``epoch`` (epochs completed), ``step`` (steps done in the unfinished
        epoch, 0 if none), ``global_step``, ``best_val_psnr``, ``history``
        (per-epoch metrics) and ``stopped_early`` (time limit or SIGTERM).
    """
    env = _Dist(args.device)
    try:
        return _train(args, env)
    finally:
        env.close()


def _train(args: argparse.Namespace, env: _Dist) -> dict:
    out = Path(args.out)
    if env.world > 1 and env.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", env.world))))

    ckpt = None
    if args.resume is not None:
        ckpt = _load_checkpoint(out / CHECKPOINT if args.resume == "auto" else Path(args.resume))

    # ---- model & optimiser (identical initial weights on all ranks)
    torch.manual_seed(args.seed)
    if ckpt is not None:
        cfg = ckpt["model_config"]  # the checkpoint's model wins over --iters etc.
        if env.main and (cfg["n_iter"], cfg["up_bound"], cfg["directional"]) != (
                args.iters, args.up_bound, args.directional):
            tqdm.write(f"resuming with the checkpoint's model configuration {cfg}")
        model = LambdaNet(UNet(**cfg["unet"]), n_iter=cfg["n_iter"], up_bound=cfg["up_bound"],
                          directional=cfg["directional"], pad=cfg["pad"],
                          normalize_input=cfg.get("normalize_input", False), solve_pad=cfg.get("solve_pad", 0))
    else:
        model = LambdaNet(UNet(base_channels=args.base_channels, depth=args.depth),
                          n_iter=args.iters, up_bound=args.up_bound, directional=args.directional,
                          normalize_input=args.normalize_input, solve_pad=args.solve_pad)
    model.backend = args.solver_backend
    model.to(env.device)
    precision = resolve_precision(args.precision, env.device)
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: pick the fastest convolutions once
    model.set_precision(precision)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    total_epochs = args.epochs  # may be lowered once by --time-budget-min
    start_epoch, start_step, global_step = 0, 0, 0
    best_psnr, history = -math.inf, []
    resumed_loss = (0.0, 0)  # running train-loss sum / count of an unfinished epoch
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # honour a changed --lr
            group["lr"] = args.lr
        start_epoch, start_step = ckpt["epoch"], ckpt["step"]
        global_step, best_psnr = ckpt["global_step"], ckpt["best_val_psnr"]
        history = list(ckpt["history"])
        resumed_loss = (float(ckpt["epoch_loss"][0]), int(ckpt["epoch_loss"][1]))
        total_epochs = min(args.epochs, int(ckpt.get("epochs_total", args.epochs)))
        _set_rng_state(ckpt["rng"])

    ddp = (DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
           if env.world > 1 else model)

    # ---- data
    train_set = ImageFolderDataset(args.data, size=args.size or None, patch_size=args.patch_size, noise=args.noise,
                                   noise_level=(args.noise_min, args.noise_max), train=True, seed=args.seed,
                                   augment=args.augment)
    val_set = None
    if args.val:
        val_set = ImageFolderDataset(args.val, size=args.size or None, noise=args.noise,
                                     noise_level=(args.noise_min, args.noise_max), train=False, seed=args.seed)
    sampler = DistributedSampler(train_set, num_replicas=env.world, rank=env.rank, shuffle=True, seed=args.seed)
    steps_per_epoch = math.ceil(len(sampler) / args.batch_size)
    if args.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, args.max_steps_per_epoch)

    # ---- logging (rank 0 only)
    writer = None
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=global_step or None)
        if ckpt is None:
            writer.add_text("args", " ".join(f"--{k}={v}" for k, v in sorted(vars(args).items())))
        tqdm.write(f"device {env.device}, U-Net precision {precision.name}, solver float32")

    stop_requested = {"flag": False}
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop_requested.update(flag=True))
    t0 = time.monotonic()
    limit_min = args.time_limit_min if args.time_limit_min is not None else args.time_budget_min
    limit_s = None if limit_min is None else 60.0 * limit_min
    budget_fixed = ckpt is not None and bool(ckpt.get("epochs_total_fixed", False))
    epoch_times: list[float] = []

    def state_dict(epoch: int, step: int, epoch_loss=(0.0, 0)) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "model_config": model.config,
            "epoch": epoch, "step": step, "global_step": global_step, "epoch_loss": list(epoch_loss),
            "epochs_total": total_epochs, "epochs_total_fixed": budget_fixed,
            "best_val_psnr": best_psnr, "history": history,
            "rng": _rng_state(), "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }

    stopped = False
    last_val: dict = history[-1] if history else {}
    epochs_done = start_epoch
    try:
        epoch = start_epoch
        while epoch < total_epochs:
            epoch_t0 = time.monotonic()
            skip = start_step if epoch == start_epoch else 0
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            indices = list(sampler)[skip * args.batch_size : steps_per_epoch * args.batch_size]
            loader = DataLoader(train_set, batch_size=args.batch_size, sampler=indices,
                                num_workers=args.num_workers, pin_memory=env.device.type == "cuda")
            bar = tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{total_epochs}",
                       disable=not env.main, dynamic_ncols=True, leave=True)
            loss_sum, loss_count = (resumed_loss if skip else (0.0, 0))
            step = skip
            for batch in loader:
                z = batch["noisy"].to(env.device, non_blocking=True)
                x = batch["clean"].to(env.device, non_blocking=True)
                lr = scheduled_lr(args, global_step / steps_per_epoch, total_epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = F.mse_loss(ddp(z), x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                global_step += 1

                over = stop_requested["flag"] or (limit_s is not None and time.monotonic() - t0 > limit_s)
                total_loss, any_over = env.all_sum([loss.item(), float(over)])
                mean_loss = total_loss / env.world
                loss_sum, loss_count = loss_sum + mean_loss, loss_count + 1
                if writer is not None and global_step % max(1, args.log_every) == 0:
                    writer.add_scalar("train/loss", mean_loss, global_step)
                shown = {"loss": f"{mean_loss:.3e}", "lr": f"{lr:.1e}"}
                if "val_psnr" in last_val:
                    shown["val_psnr"] = f"{last_val['val_psnr']:.2f}"
                bar.set_postfix(**shown)
                bar.update(1)
                if any_over > 0:
                    stopped = True
                    break
            bar.close()

            if stopped and step < steps_per_epoch:
                if env.main:
                    _save_checkpoint(out / CHECKPOINT, state_dict(epoch, step, (loss_sum, loss_count)))
                    tqdm.write(f"stopped at epoch {epoch + 1}, step {step}/{steps_per_epoch}; "
                               f"checkpoint {out / CHECKPOINT}")
                env.barrier()
                return _summary(epoch, step, global_step, best_psnr, history, stopped)

            val = _validate(model, val_set, env)
            record = {"epoch": epoch + 1, "global_step": global_step,
                      "train_loss": loss_sum / max(1, loss_count),
                      "val_psnr": val.get("psnr"), "val_ssim": val.get("ssim"),
                      "lr": scheduled_lr(args, global_step / steps_per_epoch, total_epochs),
                      "elapsed_s": time.monotonic() - t0}
            history.append(record)
            last_val = record
            improved = val_set is None or val["psnr"] > best_psnr
            if val_set is not None and improved:
                best_psnr = val["psnr"]
            if env.main:
                writer.add_scalar("train/epoch_loss", record["train_loss"], epoch + 1)
                if val_set is not None:
                    writer.add_scalar("val/psnr", val["psnr"], epoch + 1)
                    writer.add_scalar("val/ssim", val["ssim"], epoch + 1)
                    writer.add_image("val/lambda_map", _lambda_image(model, val_set, env.device), epoch + 1)
                writer.flush()
                if improved:
                    model.save_pretrained(out / BEST)
                if stopped or (epoch + 1) % args.checkpoint_every == 0 or epoch + 1 >= total_epochs:
                    _save_checkpoint(out / CHECKPOINT, state_dict(epoch + 1, 0))
                msg = f"epoch {epoch + 1}: loss {record['train_loss']:.4e}"
                if val_set is not None:
                    msg += f", val PSNR {val['psnr']:.2f} dB, SSIM {val['ssim']:.4f} (best {best_psnr:.2f})"
                tqdm.write(msg)
            env.barrier()
            epochs_done = epoch + 1
            epoch += 1
            if stopped:
                break
            epoch_times.append(time.monotonic() - epoch_t0)
            if args.time_budget_min is not None and not budget_fixed and len(epoch_times) == 2:
                # The first epoch includes compilation: time the second one.
                remaining = 60.0 * args.time_budget_min - (time.monotonic() - t0)
                fitted = epochs_done + int(0.97 * remaining / max(epoch_times[1], 1e-9))
                fitted = int(env.all_sum([float(fitted)])[0] / env.world)
                total_epochs = max(epochs_done, min(args.epochs, fitted))
                budget_fixed = True
                if env.main:
                    _save_checkpoint(out / CHECKPOINT, state_dict(epochs_done, 0))
                    tqdm.write(f"--time-budget-min {args.time_budget_min:g}: {epoch_times[1]:.1f} s per epoch, "
                               f"training {total_epochs} epochs")
        return _summary(epochs_done, 0, global_step, best_psnr, history, stopped)
    finally:
        if writer is not None:
            writer.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def scheduled_lr(args: argparse.Namespace, epoch: float, total_epochs: int) -> float:
    """Learning rate at fractional epoch ``epoch`` (steps done / steps per epoch).

    ``constant``: ``--lr`` after the optional linear warm-up. ``cosine``: linear
    warm-up over ``--warmup-epochs``, then ``lr_min + (lr − lr_min)·½(1 + cos πt)``
    with ``t`` going from 0 at the end of the warm-up to 1 at ``total_epochs``,
    and ``lr_min = lr / 100``.
    """
    peak, warm = args.lr, args.warmup_epochs
    if warm > 0 and epoch < warm:
        return peak * (epoch + 1e-3) / warm
    if args.lr_schedule == "constant":
        return peak
    t = min(1.0, max(0.0, (epoch - warm) / max(total_epochs - warm, 1e-9)))
    low = peak / 100
    return low + (peak - low) * 0.5 * (1.0 + math.cos(math.pi * t))


def _summary(epoch, step, global_step, best_psnr, history, stopped) -> dict:
    return {"epoch": epoch, "step": step, "global_step": global_step,
            "best_val_psnr": best_psnr, "history": history, "stopped_early": stopped}


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn missing folders / files and bad numbers into clean usage errors."""
    for flag, folder in (("--data", args.data), ("--val", args.val)):
        if folder is not None:
            try:
                list_images(folder)
            except (OSError, ValueError) as exc:
                parser.error(f"{flag}: {exc}")
    if args.resume is not None:
        ckpt = Path(args.out) / CHECKPOINT if args.resume == "auto" else Path(args.resume)
        if not ckpt.is_file():
            parser.error(f"--resume: checkpoint not found: {str(ckpt)!r}")
    if args.checkpoint_every < 1:
        parser.error(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--iters", args.iters)):
        if value < (0 if flag == "--iters" else 1):
            parser.error(f"{flag} must be positive, got {value}")
    if args.size < 0:
        parser.error(f"--size must be positive (or 0 for full resolution), got {args.size}")
    if args.size == 0 and args.patch_size is None and args.batch_size > 1:
        parser.error("--size 0 (full resolution) keeps each image's own size: use --batch-size 1 or --patch-size")
    if args.size == 0 and args.patch_size is not None:
        from PIL import Image

        for path in list_images(args.data):
            with Image.open(path) as im:
                if min(im.size) < args.patch_size:
                    parser.error(f"--patch-size {args.patch_size} exceeds image {str(path)!r} "
                                 f"of size {im.height}×{im.width}")
    if args.solve_pad < 0:
        parser.error(f"--solve-pad must be >= 0, got {args.solve_pad}")
    if args.warmup_epochs < 0:
        parser.error(f"--warmup-epochs must be >= 0, got {args.warmup_epochs}")
    for flag, value in (("--time-limit-min", args.time_limit_min), ("--time-budget-min", args.time_budget_min)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be positive, got {value}")
    if args.max_steps_per_epoch is not None and args.max_steps_per_epoch < 1:
        parser.error("--max-steps-per-epoch must be >= 1")
    if not 0 <= args.noise_min <= args.noise_max:
        parser.error("need 0 <= --noise-min <= --noise-max")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tvfast.training.train`` and ``tvfast train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
