"""The average of models fine-tuned from one parent ("model soup"): their weights averaged tensor by tensor.

    python experiments/average_weights.py experiments/runs_mri4x_converged/best.safetensors \
        experiments/runs_mri4x_xray_only/best.safetensors --out experiments/runs_mri4x_soup/best.safetensors

Every input needs the same configuration (the ``.json`` beside it) and the
same tensors; the output gets that configuration. Fine-tunes of one parent
usually stay in one basin of the loss, where the average is a model between
them rather than a broken one; whether it is better is measured, not assumed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from tvfast.io.atomic import atomic_write, atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=Path, help="two or more .safetensors, each with its .json")
    parser.add_argument("--out", type=Path, required=True, help="the averaged .safetensors (its .json beside it)")
    args = parser.parse_args(argv)
    if len(args.weights) < 2:
        parser.error("weights: expected two or more files to average")
    if args.out.exists() or args.out.resolve() in [w.resolve() for w in args.weights]:
        parser.error(f"--out: {args.out} exists; choose a new path (inputs are never overwritten)")
    configs = [json.loads(w.with_suffix(".json").read_text()) for w in args.weights]
    if any(c != configs[0] for c in configs[1:]):
        parser.error("weights: the models' configurations (.json) differ; only fine-tunes of one model average")
    states = [load_file(str(w)) for w in args.weights]
    if any(s.keys() != states[0].keys() for s in states[1:]):
        parser.error("weights: the files hold different tensors")
    average = {k: sum(s[k].double() for s in states).div(len(states)).to(states[0][k].dtype).contiguous()
               for k in states[0]}
    atomic_write(args.out, lambda tmp: save_file(average, tmp))
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(configs[0], indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}: the average of {len(states)} models, {len(average)} tensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
