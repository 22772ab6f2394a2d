"""Train ``LambdaNet`` end to end through the unrolled PDHG solver (docs/method.md §6).

Objective, for clean images ``x`` and noisy ``z = x + s·std(x)·n``::

    min_Θ  E ‖ PDHG_T(z, Λ_Θ(z)) − x ‖² / N           (MSE, mean over pixels and batch)

with Adam, seed 42, T = 256 by default, ``s ~ U[0.1, 0.5]`` per sample.
Validation images get fixed noise (seeded per image); the best weights are
selected on mean validation PSNR.

The learning-rate schedule comes from ``--recipe`` (:data:`RECIPES`):
``best`` (the default, the shipped model's recipe, experiments/training_log.md §1) is a
linear warm-up over 5 epochs to a peak of 1e-3, then a cosine decay to 1e-5;
``seed`` is the original constant 1e-4. ``--lr``, ``--lr-schedule`` and
``--warmup-epochs`` override single values of the recipe. The solver runs
as the default call (the fused CPU path on CPU tensors, Triton on CUDA).

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
in epoch ``e`` come from a generator seeded by ``(seed, e, i)``, the T of step
``k`` of epoch ``e`` (``--iters-range``) from one seeded by ``(seed, e, k)``, and PDHG is
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
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from tvfast.models.lambda_net import LambdaNet
from tvfast.models.reconstruction_net import ReconstructionNet
from tvfast.evaluation.metrics import frame_metrics, psnr, ssim
from tvfast.models.precision import resolve_precision
from tvfast.training.checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tvfast.training.options import (UsageError, apply_recipe, build_parser, check_arguments, explicit_options,
                                     resolve_task_defaults, resumed_arguments)
from tvfast.training.data import NoisyFolderDataset
from tvfast.training.distributed import ProcessGroup
from tvfast.training.tasks import Task, task_spec

__all__ = ["build_parser", "train", "training_iters", "main"]

_now = time.monotonic  # the trainer's clock (time limits, budgets, elapsed times)
BEST = "best.safetensors"
_ITERS_STREAM = 1  # tells the seed of a step's T apart from the (seed, epoch, index) of the samples

# ---------------------------------------------------------------- run state
@dataclass
class RunState:
    """Where a run stands: everything of ``last.pt`` besides weights, optimizer and RNG states."""

    total_epochs: int  # planned epochs (fixed once by --time-budget-min)
    total_fixed: bool = False  # True once --time-budget-min has fixed total_epochs
    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the unfinished epoch
    global_step: int = 0
    best_psnr: float = -math.inf
    history: list = field(default_factory=list)  # one record per epoch
    epoch_loss: tuple[float, int] = (0.0, 0)  # running train-loss sum / count of the unfinished epoch

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "global_step": self.global_step,
                "epoch_loss": list(self.epoch_loss), "epochs_total": self.total_epochs,
                "epochs_total_fixed": self.total_fixed, "best_val_psnr": self.best_psnr, "history": self.history}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, args: argparse.Namespace) -> "RunState":
        # --resume with --time-budget-min re-fits the epoch count to the new budget (counted from this
        # start): a finished run is extended, its cosine horizon moves out with it.
        fixed = bool(ckpt.get("epochs_total_fixed", False))
        # Until a new budget re-fits it, the epoch count (and so the learning rate) stays the checkpoint's.
        total = min(args.epochs, int(ckpt["epochs_total"])) if fixed else args.epochs
        if fixed and args.time_budget_min is not None and ckpt["epoch"] >= total:
            total = args.epochs  # a finished run that is extended: nothing left to do before the refit
        return cls(total_epochs=total, total_fixed=fixed and args.time_budget_min is None,
                   epoch=ckpt["epoch"], step=ckpt["step"], global_step=ckpt["global_step"],
                   best_psnr=ckpt["best_val_psnr"], history=list(ckpt["history"]),
                   epoch_loss=(float(ckpt["epoch_loss"][0]), int(ckpt["epoch_loss"][1])))

    def summary(self, stopped: bool) -> dict:
        return {"epoch": self.epoch, "step": self.step, "global_step": self.global_step,
                "best_val_psnr": self.best_psnr, "history": self.history, "stopped_early": stopped}


def _build_model(args: argparse.Namespace, ckpt: dict | None, env: ProcessGroup) -> LambdaNet:
    """The model of a new run (seeded: identical on every rank) or of the checkpoint, on the device."""
    torch.manual_seed(args.seed)
    # The solver's default call (the fused CPU path needs no compilation); None also replaces the True that
    # checkpoints of earlier versions stored, so a resumed run leaves the torch.compile path too.
    solver = {"solver_backend": args.solver_backend, "solver_compile": None}
    if ckpt is None:
        model = task_spec(args.task).new_model(args)
    elif ckpt.get("model_kind", "lambdanet") == "reconstruction":
        saved = ckpt["model_config"].get("normalisation", "mean")
        if "normalisation" in getattr(args, "explicit", set()) and args.normalisation != saved:
            raise UsageError(f"--normalisation {args.normalisation} differs from the checkpoint's model ({saved}); "
                             "start a new run from its weights with --init to switch")
        args.normalisation = saved  # the run's record (last.pt's args) names the model's own
        balance = ckpt["model_config"].get("step_balance", 1.0)
        if "step_balance" in getattr(args, "explicit", set()) and args.step_balance != balance:
            raise UsageError(f"--step-balance {args.step_balance:g} differs from the checkpoint's model "
                             f"({balance:g}); start a new run from its weights with --init to switch")
        args.step_balance = balance
        saved_pilot = (ckpt["model_config"].get("pilot"), ckpt["model_config"].get("pilot_iters", 64))
        for key, given, kept in (("pilot", args.pilot, saved_pilot[0]), ("pilot_iters", args.pilot_iters, saved_pilot[1])):
            if key in getattr(args, "explicit", set()) and given != kept:
                raise UsageError(f"--{key.replace('_', '-')} {given} differs from the checkpoint's model ({kept}); "
                                 "start a new run from its weights with --init to switch")
        args.pilot, args.pilot_iters = saved_pilot
        model = ReconstructionNet.from_config({**ckpt["model_config"], **solver})
        model.load_state_dict(ckpt["model"])
    else:
        kind = ckpt.get("model_kind", "lambdanet")
        cfg = ckpt["model_config"]  # the checkpoint's model wins over --iters etc.
        if kind == "lambdanet" and env.main and (cfg["n_iter"], cfg["up_bound"], cfg["directional"]) != (
                args.iters, args.up_bound, args.directional):
            tqdm.write(f"resuming with the checkpoint's model configuration {cfg}")
        model = LambdaNet.from_config({**cfg, **solver}, spatial_dims=3 if kind == "lambdanet3d" else 2)
        model.load_state_dict(ckpt["model"])
    _init_weights(model, args)
    model.to(env.device)
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: pick the fastest convolutions once
    return model.set_precision(resolve_precision(args.precision, env.device))


def _init_weights(model, args: argparse.Namespace) -> None:
    """Load ``--init`` weights into a new run's model: the same parameters and shapes, except that a
    reconstruction model with a ``--pilot`` may start from one without: the first convolution's new input
    channels (the pilot's, after x₀'s) start at zero weight, so the run starts from the old model's maps."""
    if getattr(args, "init", None) is None or args.resume is not None:
        return
    from safetensors.torch import load_file

    weights = load_file(args.init)
    if isinstance(model, ReconstructionNet) and model.pilot is not None:
        saved = _init_config(args.init)
        if saved.get("task") != model.task:
            raise UsageError(f"--init {args.init}: a {saved.get('task')!r} model; this run trains a {model.task!r} one")
        if saved.get("pilot") is None:
            weights = _widen_first_convolution(weights, model.state_dict())
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        hint = ("; a model with a pilot needs the run's --pilot" if isinstance(model, ReconstructionNet)
                and model.pilot is None and _FIRST_CONVOLUTION in str(exc) else "")
        raise UsageError(f"--init {args.init}: the weights do not fit this run's model ({exc}){hint}") from None


_FIRST_CONVOLUTION = "unet.inc.0.weight"


def _init_config(path: str) -> dict:
    """The configuration (the JSON beside the weights) of an ``--init`` reconstruction model."""
    from tvfast.models.files import read_model_config
    from tvfast.models.reconstruction_net import FORMAT

    try:
        return read_model_config(path, (FORMAT,))[1]
    except (OSError, ValueError) as exc:
        raise UsageError(f"--init {path}: a --pilot run reads the model's configuration beside its weights ({exc})"
                         ) from None


def _widen_first_convolution(weights: dict, target: dict) -> dict:
    """``weights`` with the U-Net's first convolution given the pilot's input channels, at zero weight, after
    x₀'s: (C_out, C, k, k) → (C_out, 2C, k, k). Anything else that does not fit is left to the strict load."""
    value, want = weights.get(_FIRST_CONVOLUTION), target.get(_FIRST_CONVOLUTION)
    if value is None or want is None or want.shape != (value.shape[0], 2 * value.shape[1], *value.shape[2:]):
        return weights
    return {**weights, _FIRST_CONVOLUTION: torch.cat((value, torch.zeros_like(value)), dim=1)}


def _checkpoint(model: LambdaNet, optimizer, state: RunState, args: argparse.Namespace) -> dict:
    return {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "model_config": model.config,
        "model_kind": ("reconstruction" if isinstance(model, ReconstructionNet)
                       else "lambdanet3d" if model.spatial_dims == 3 else "lambdanet"),
        **state.to_dict(),
        "rng": rng_state(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "explicit"},
    }


# ---------------------------------------------------------------- validation
def _validate(model: LambdaNet, dataset: NoisyFolderDataset | None, env: ProcessGroup, task: Task) -> dict:
    """Mean PSNR / SSIM of ``model`` on the (sharded) validation set."""
    if dataset is None:
        return {}
    model.eval()
    sums = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for i in range(env.rank, len(dataset), env.world):
            item = dataset[i]
            x = task.run(model, _as_batch(item), env.device)
            if item["clean"].ndim == 4:  # a sequence (1, D, H, W): mean over frames
                p, q = frame_metrics(item["clean"], x)
            else:
                p, q = psnr(item["clean"], x), ssim(item["clean"], x)
            sums[0] += p
            sums[1] += q
            sums[2] += 1
    model.train()
    total_psnr, total_ssim, count = env.all_sum(sums)
    return {"psnr": total_psnr / count, "ssim": total_ssim / count}


def _as_batch(item: dict) -> dict:
    """One dataset item as a batch of one."""
    return {k: (v[None] if isinstance(v, torch.Tensor) else v) for k, v in item.items()}


def _lambda_image(model: LambdaNet, dataset: NoisyFolderDataset, device, task: Task) -> torch.Tensor:
    """Λ of the first validation image scaled to [0, 1] for TensorBoard, ``(1, H, W)``
    (directional maps side by side: vertical | horizontal)."""
    model.eval()
    with torch.no_grad():
        lam = task.lambda_map(model, _as_batch(dataset[0]), device)[0].float().cpu()
    model.train()
    if lam.ndim == 4:  # (Λ_t, Λ_xy, Λ_xy) of a sequence: its middle frame, Λ_t | Λ_xy
        lam = lam[:2, lam.shape[1] // 2]
    lam = torch.cat(list(lam), dim=-1)[None]
    return lam / lam.max().clamp_min(1e-12)


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
    resolve_task_defaults(args)
    env = ProcessGroup(args.device)
    try:
        return _Trainer(args, env).run()
    finally:
        env.close()


class _Trainer:
    """One training run: its parts are built in ``__init__``; :meth:`run` loops over epochs."""

    def __init__(self, args: argparse.Namespace, env: ProcessGroup) -> None:
        self.args, self.env, self.out = args, env, Path(args.out)
        if env.world > 1 and env.device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", env.world))))
        ckpt = None
        if args.resume is not None:
            ckpt = load_checkpoint(self.out / CHECKPOINT if args.resume == "auto" else Path(args.resume))
            explicit = getattr(args, "explicit", None)
            args = self.args = resumed_arguments(args, ckpt.get("args", {}), set(vars(args)) if explicit is None
                                                 else explicit)
        args = self.args = apply_recipe(argparse.Namespace(**vars(args)))
        self.model = _build_model(args, ckpt, env)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        if ckpt is None:
            self.state = RunState(total_epochs=args.epochs)
        else:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.state = RunState.from_checkpoint(ckpt, args)
            set_rng_state(ckpt["rng"])
        self.ddp = (DistributedDataParallel(self.model, device_ids=[env.device.index] if env.device.type == "cuda"
                                            else None) if env.world > 1 else self.model)
        self._build_data()
        self.writer = None
        if env.main:
            self.out.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.out / "tensorboard"), purge_step=self.state.global_step or None)
            if ckpt is None:
                self.writer.add_text("args", " ".join(f"--{k}={v}" for k, v in sorted(vars(args).items())
                                                      if k != "explicit"))
            tqdm.write(f"device {env.device}, U-Net precision {self.model.precision.name}, solver float32")
        self.limit_s = self._time_limit(fitted=False)
        self.stop_requested = False
        self.t0 = _now()

    def _time_limit(self, fitted: bool) -> float | None:
        """Seconds after which the run stops: --time-limit-min, else the budget. Once the budget has fixed
        the epoch count the run ends with its last epoch; the limit then only guards against epochs that
        became much slower (25 % over the budget)."""
        a = self.args
        if a.time_limit_min is not None:
            return 60.0 * a.time_limit_min
        if a.time_budget_min is not None:
            return 60.0 * a.time_budget_min * (1.25 if fitted else 1.0)
        return None

    def _build_data(self) -> None:
        self.train_set, self.val_set = task_spec(self.args.task).datasets(self.args)
        self.task = Task(self.args.task, self.train_set)
        self._make_sampler()

    def _make_sampler(self) -> None:
        a, env = self.args, self.env
        self.sampler = DistributedSampler(self.train_set, num_replicas=env.world, rank=env.rank, shuffle=True,
                                          seed=a.seed)
        self.steps_per_epoch = math.ceil(len(self.sampler) / a.batch_size)
        if a.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, a.max_steps_per_epoch)

    def _save(self) -> None:
        save_checkpoint(self.out / CHECKPOINT, _checkpoint(self.model, self.optimizer, self.state, self.args))

    def _save_best(self) -> None:
        """Write best.safetensors + best.json (the model trains with the solver's default call, and ships with it)."""
        self.model.save_pretrained(self.out / BEST)

    def run(self) -> dict:
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        try:
            epoch_times: list[float] = []
            while self.state.epoch < self.state.total_epochs:
                started = _now()
                stopped = self._train_epoch()
                if stopped and self.state.step < self.steps_per_epoch:  # stopped inside the epoch
                    if self.env.main:
                        self._save()
                        tqdm.write(f"stopped at epoch {self.state.epoch + 1}, step {self.state.step}/"
                                   f"{self.steps_per_epoch}; checkpoint {self.out / CHECKPOINT}")
                    self.env.barrier()
                    return self.state.summary(stopped=True)
                if stopped and self.env.main:
                    self._save()  # before validation: a SIGKILL that follows SIGTERM loses nothing
                self._end_epoch(stopped)
                if stopped:
                    return self.state.summary(stopped=True)
                epoch_times.append(_now() - started)
                if len(epoch_times) == 2:
                    self._fit_epochs_to_budget(epoch_times[1])
            return self.state.summary(stopped=False)
        finally:
            if self.writer is not None:
                self.writer.close()
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)

    def _train_epoch(self) -> bool:
        """Train (the rest of) epoch ``state.epoch``; True if the time limit or SIGTERM stopped it."""
        a, env, st = self.args, self.env, self.state
        skip = st.step
        self.train_set.set_epoch(st.epoch)
        self.sampler.set_epoch(st.epoch)
        indices = list(self.sampler)[skip * a.batch_size : self.steps_per_epoch * a.batch_size]
        loader = DataLoader(self.train_set, batch_size=a.batch_size, sampler=indices,
                            num_workers=a.num_workers, pin_memory=env.device.type == "cuda")
        bar = tqdm(total=self.steps_per_epoch, initial=skip, desc=f"epoch {st.epoch + 1}/{st.total_epochs}",
                   disable=not env.main, dynamic_ncols=True, leave=True)
        loss_sum, loss_count = st.epoch_loss if skip else (0.0, 0)
        last_val = st.history[-1] if st.history else {}
        stopped = False
        for batch in loader:
            lr = scheduled_lr(a, st.global_step / self.steps_per_epoch, st.total_epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            n_iter = training_iters(a, st.epoch, st.step)
            loss = self.task.loss(self.ddp, batch, env.device, n_iter)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            st.step += 1
            st.global_step += 1

            over = self.stop_requested or (self.limit_s is not None and _now() - self.t0 > self.limit_s)
            total_loss, any_over = env.all_sum([loss.item(), float(over)])
            mean_loss = total_loss / env.world
            loss_sum, loss_count = loss_sum + mean_loss, loss_count + 1
            st.epoch_loss = (loss_sum, loss_count)
            if self.writer is not None and st.global_step % max(1, a.log_every) == 0:
                self.writer.add_scalar("train/loss", mean_loss, st.global_step)
            shown = {"loss": f"{mean_loss:.3e}", "lr": f"{lr:.1e}"}
            if n_iter is not None:
                shown["T"] = str(n_iter)
            if last_val.get("val_psnr") is not None:
                shown["val_psnr"] = f"{last_val['val_psnr']:.2f}"
            bar.set_postfix(**shown)
            bar.update(1)
            if any_over > 0:
                stopped = True
                break
        bar.close()
        return stopped

    def _end_epoch(self, stopped: bool) -> None:
        """Validate, record the epoch, write logs, the best weights and (every N epochs) the checkpoint."""
        a, env, st = self.args, self.env, self.state
        val = _validate(self.model, self.val_set, env, self.task)
        loss_sum, loss_count = st.epoch_loss
        record = {"epoch": st.epoch + 1, "global_step": st.global_step,
                  "train_loss": loss_sum / max(1, loss_count),
                  "val_psnr": val.get("psnr"), "val_ssim": val.get("ssim"),
                  "lr": scheduled_lr(a, st.global_step / self.steps_per_epoch, st.total_epochs),
                  "elapsed_s": _now() - self.t0}
        st.history.append(record)
        st.epoch, st.step, st.epoch_loss = st.epoch + 1, 0, (0.0, 0)
        improved = self.val_set is None or val["psnr"] > st.best_psnr
        if self.val_set is not None and improved:
            st.best_psnr = val["psnr"]
        if env.main:
            step = st.global_step  # one axis for every scalar, so purge_step on resume treats them alike
            self.writer.add_scalar("train/epoch_loss", record["train_loss"], step)
            if self.val_set is not None:
                self.writer.add_scalar("val/psnr", val["psnr"], step)
                self.writer.add_scalar("val/ssim", val["ssim"], step)
                self.writer.add_image("val/lambda_map", _lambda_image(self.model, self.val_set, env.device, self.task), step)
            self.writer.flush()
            if improved:
                self._save_best()
            if stopped or st.epoch % a.checkpoint_every == 0 or st.epoch >= st.total_epochs:
                self._save()
            msg = f"epoch {st.epoch}: loss {record['train_loss']:.4e}"
            if self.val_set is not None:
                msg += f", val PSNR {val['psnr']:.2f} dB, SSIM {val['ssim']:.4f} (best {st.best_psnr:.2f})"
            tqdm.write(msg)
        env.barrier()

    def _fit_epochs_to_budget(self, epoch_seconds: float) -> None:
        """With --time-budget-min, fix the number of epochs from the second epoch's time (the first compiles)."""
        a, env, st = self.args, self.env, self.state
        if a.time_budget_min is None or st.total_fixed:
            return
        remaining = 60.0 * a.time_budget_min - (_now() - self.t0)
        fitted = st.epoch + int(0.97 * remaining / max(epoch_seconds, 1e-9))
        fitted = int(env.all_sum([float(fitted)])[0] / env.world)
        st.total_epochs, st.total_fixed = max(st.epoch, min(a.epochs, fitted)), True
        self.limit_s = self._time_limit(fitted=True)
        if env.main:
            self._save()
            tqdm.write(f"--time-budget-min {a.time_budget_min:g}: {epoch_seconds:.1f} s per epoch, "
                       f"training {st.total_epochs} epochs")


def training_iters(args: argparse.Namespace, epoch: int, step: int) -> int | None:
    """T of training step ``step`` (0-based, within epoch ``epoch``): None (the model's own T) without
    ``--iters-range``, else an integer uniform in [LOW, HIGH] drawn by a generator seeded from
    ``(seed, epoch, step)`` — the same on every rank and in a resumed run."""
    if getattr(args, "iters_range", None) is None:
        return None
    low, high = args.iters_range
    return int(np.random.default_rng([args.seed, epoch, step, _ITERS_STREAM]).integers(low, high + 1))


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tvfast.training.train`` and ``tvfast train``."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.sequences and args.task not in ("denoise", "sequences"):  # --sequences is --task sequences
        parser.error(f"--sequences: the {args.task} task reconstructs 2-D images")
    resolve_task_defaults(args)
    check_arguments(parser, args)
    args.explicit = explicit_options(parser, argv)
    try:
        train(args)
    except UsageError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
