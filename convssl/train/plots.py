"""The loss curve of a run, drawn from `metrics.jsonl` at the end of training."""

from __future__ import annotations

from pathlib import Path

from convssl.train.metrics import read_metrics


def plot_loss(metrics_path: Path, out_path: Path) -> Path | None:
    """Training loss per objective and validation loss over steps; None if nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [r for r in records if "loss" in r]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    keys = sorted({k for r in train for k in r if k.startswith("loss.")})
    for key in keys:
        points = [(r["step"], r[key]) for r in train if key in r]
        ax.plot(*zip(*points), label=f"train {key[5:]}", alpha=0.6)
    val = [r for r in records if "val.loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val.loss"] for r in val], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
