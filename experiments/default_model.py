"""``python -m experiments.default_model`` (``make model``): train the shipped default model, reproducibly.

Synthetic data only (never the measured patterns), fixed seed, about 16 minutes on 2 CPU cores (one
core generates batches, the other runs SGD). Writes ``src/xrdmtl/data/models/default/``: the model
folder plus ``metrics.json``, ``metrics.csv`` and ``curves.png``; the checkpoint is removed.
``--steps N`` and ``--out DIR`` make a shorter or side run with the same settings.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

from xrdmtl.model.networks import SHIPPED_MTL_KWARGS
from xrdmtl.training.train import CHECKPOINT, TrainConfig, train

CONFIG = TrainConfig(
    phases=["bastnaesite", "calcite", "rhenium"],
    arch="mtl",
    arch_kwargs=dict(SHIPPED_MTL_KWARGS),
    steps=18000,
    batch_size=128,
    lr=2e-3,
    seed=20240315,
    eval_every=250,
    patience=0,  # the best step is kept; stopping early cut long runs before the learning rate fell
    val_size=2000,
    calib_size=2000,
)


def default_dir() -> Path:
    """Where the shipped model lives in the source tree."""
    return Path(__file__).resolve().parents[1] / "src" / "xrdmtl" / "data" / "models" / "default"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_dir(), help="model folder to write")
    parser.add_argument("--steps", type=int, default=CONFIG.steps, help="training steps")
    args = parser.parse_args(argv)
    result = train(replace(CONFIG, steps=args.steps), args.out, progress=True)
    shutil.rmtree(args.out / CHECKPOINT, ignore_errors=True)
    last = result.evals[-1] if result.evals else {}
    print(
        f"default model in {args.out}: {result.n_parameters:,} parameters, {result.seconds:.0f} s, "
        f"best step {result.best_step}, held-out simulated exact match {last.get('val_exact', float('nan')):.3f}"
    )


if __name__ == "__main__":
    main()
