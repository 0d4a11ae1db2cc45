"""PNG plots of the report (matplotlib, Agg backend: no display needed).

- `task_bars`: one group of bars per task (and per domain mean and overall mean), one bar per
  model, scores in percent;
- `train_loss`: training loss per teacher over steps (log scale when positive), total and dev;
- `layer_weights`: per model, a heat map of the learned softmax layer weights (tasks x layers).
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from usad2.utils.atomic import atomic_write  # noqa: E402


def _save(fig, path):
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def task_bars(results, models, rows, path):
    """Grouped bars: rows = [(label, {model: score})] in display order."""
    n, m = len(rows), len(models)
    fig, ax = plt.subplots(figsize=(min(16.0, max(7.0, 0.16 * n * max(1, m) + 3)), 5.0))
    width = 0.8 / max(1, m)
    x = np.arange(n)
    cmap = plt.get_cmap("tab10")
    for j, model in enumerate(models):
        values = [100 * scores.get(model, np.nan) for _, scores in rows]
        ax.bar(x + (j - (m - 1) / 2) * width, values, width, label=model, color=cmap(j % 10))
    ax.set_xticks(x)
    ax.set_xticklabels([label for label, _ in rows], rotation=35, ha="right")
    ax.set_ylabel("test score (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def train_loss(curves, path):
    """Loss per teacher over steps (each teacher's mean head loss), plus total and dev loss."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for teacher, points in sorted(curves["teachers"].items()):
        steps, values = zip(*points)
        ax.plot(steps, values, label=teacher)
    for name, style in (("total", "k-"), ("dev", "k--")):
        if curves[name]:
            steps, values = zip(*curves[name])
            ax.plot(steps, values, style, label=f"{name} loss", linewidth=1.5 if name == "total" else 1.0,
                    marker="o" if name == "dev" else None, markersize=3)
    values = [v for pts in curves["teachers"].values() for _, v in pts] + [v for _, v in curves["total"]]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("distillation loss per teacher")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def layer_weights(model, tasks, layer_names, weights, path):
    """Heat map of one model's learned layer weights: rows = tasks, columns = layers."""
    data = np.array(weights, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(layer_names) + 2.5), 0.4 * len(tasks) + 1.6))
    im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-6, float(data.max())))
    ax.set_xticks(range(len(layer_names)))
    ax.set_xticklabels(layer_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels(tasks, fontsize=8)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if data[i, j] < 0.6 * data.max() else "black")
    ax.set_title(f"{model}: learned layer weights")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(fig, path)


def weight_histograms(weights, path):
    """One histogram per teacher of its per-utterance weight: weights = {teacher: (N,) array}."""
    names = sorted(weights)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 0.5, 3.0), squeeze=False)
    top = max(float(np.max(w)) for w in weights.values()) if names else 1.0
    for ax, name in zip(axes[0], names):
        ax.hist(weights[name], bins=np.linspace(0, max(top, 1e-6) * 1.02, 26), color="tab:blue")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("weight")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("utterances")
    fig.suptitle("effective teacher weight per training utterance", fontsize=10, y=1.06)
    return _save(fig, path)
