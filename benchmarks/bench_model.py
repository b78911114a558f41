"""Model: inference speed on 2 CPU threads, size of the weights, training-step and data speed.

Inference: the shipped default model (or the default architecture if none is shipped yet), loaded
with ``load_model`` (BatchNorm folded), ``torch.inference_mode``, ``torch.set_num_threads(2)``,
batches of 1024 random inputs ``(1024, N_CHANNELS, 2048)``; the figure is the median over repeated batches
after a warm-up. ``..._per_cpu_s`` is the same on one thread per CPU-second (process time), which
other load on the machine barely changes: twice it bounds what 2 idle cores can do. Training: SGD steps of batch 128 on 1 thread, and synthesis + preprocessing of the
same batches on 1 core (what a DataLoader worker does), in patterns/s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS: dict[str, float] = {"model_inference_patterns_per_s": 10_000}


def _rate(fn, n: int, seconds: float, clock=time.perf_counter) -> float:
    """Median rate (items per second of ``clock``) of ``fn()`` processing ``n`` items per call."""
    fn()
    rates: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(rates) < 3:
        t0 = clock()
        fn()
        rates.append(n / max(clock() - t0, 1e-9))
    return statistics.median(rates)


def bench(seconds: float = 5.0) -> dict[str, float]:
    """Figures: inference patterns/s, weights size (MB) and parameters, training-step and
    synthesis patterns/s."""
    import torch

    from xrdmtl.model.files import default_model_dir, load_model, save_model
    from xrdmtl.model.losses import make_loss
    from xrdmtl.model.networks import build_model
    from xrdmtl.model.preprocess import N_CHANNELS
    from xrdmtl.physics.phases import TARGETS as PHASES

    folder = default_model_dir()
    if not (folder / "model.safetensors").is_file():
        folder = Path(tempfile.mkdtemp()) / "model"
        save_model(folder, build_model("mtl", list(PHASES)))
    model = load_model(folder, device="cpu")
    out = {
        "model_weights_mb": (folder / "model.safetensors").stat().st_size / 1e6,
        "model_parameters": float(sum(p.numel() for p in model.net.parameters())),
    }
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        x = np.random.default_rng(0).random((1024, N_CHANNELS, model.grid.n), dtype=np.float32)
        out["model_inference_patterns_per_s"] = _rate(
            lambda: model.predict_proba(x, batch_size=1024), 1024, seconds
        )

        torch.set_num_threads(
            1
        )  # per CPU-second of one thread: robust to other load on the machine
        out["model_inference_patterns_per_cpu_s"] = _rate(
            lambda: model.predict_proba(x, batch_size=1024), 1024, seconds, time.process_time
        )
        kwargs = model.meta["architecture"]["kwargs"]
        net = build_model(
            model.meta["architecture"]["name"], model.phases, model.grid, **kwargs
        ).train()
        loss_fn = make_loss("ce", len(model.phases))
        opt = torch.optim.AdamW(net.parameters(), 1e-3)
        xb = torch.from_numpy(x[:128])
        yb = torch.from_numpy(
            (np.random.default_rng(1).random((128, len(model.phases))) < 0.5).astype(np.uint8)
        )

        def step() -> None:
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

        out["train_step_patterns_per_s"] = _rate(step, 128, seconds)
    finally:
        torch.set_num_threads(threads)

    from xrdmtl.training.train import TrainConfig, make_synthesizer, simulated_set

    synth = make_synthesizer(TrainConfig())
    k = iter(range(10**6))
    out["train_data_patterns_per_s"] = _rate(
        lambda: simulated_set(synth, 128, [0, 0, next(k)]), 128, seconds
    )
    return out


if __name__ == "__main__":
    for name, value in bench().items():
        print(f"{name:34s} {value:12,.1f}")
