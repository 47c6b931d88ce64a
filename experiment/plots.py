"""PNG plots (matplotlib, Agg): accuracy vs iteration, diversity vs iteration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiment.methods import SPECS

COLORS = {key: f"C{i}" for i, key in enumerate(SPECS)}  # one colour per method in every plot
PLOTTED = ("maft", "single_ft", "debate")  # the three; other methods are drawn faint
DIVERSITY = (("consensus_final", "final-round consensus"),
             ("embedding_dissimilarity", "embedding dissimilarity (round 1)"),
             ("cross_nll", "cross-agent NLL (nats/token)"))


def _figure(ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)  # pyplot keeps every figure open until closed: write_report runs often


def _series(results: dict[str, Any], method: str, last: int,
            value: Any) -> tuple[list[int], list[float], list[float]]:
    """x, y, error bars; a method that never trains is flat at its iteration-0 value."""
    entry = results["methods"][method]
    its = entry["iterations"]
    if not entry["trains"] and "0" in its:
        its = {str(i): its["0"] for i in range(last + 1)}
    xs, ys, es = [], [], []
    for key in sorted(its, key=int):
        got = value(its[key])
        if got is not None:
            xs.append(int(key))
            ys.append(got[0])
            es.append(got[1])
    return xs, ys, es


def plot_accuracy(results: dict[str, Any], path: Path) -> None:
    """Accuracy (%) with standard-error bars per iteration."""
    fig, axes = _figure()
    ax, last = axes[0][0], int(results["config"]["iterations"])
    for method, entry in results["methods"].items():
        xs, ys, es = _series(results, method, last, lambda e: (
            100 * e["eval"]["accuracy"], 100 * (e["eval"]["stderr"] or 0)))
        main = method in PLOTTED
        ax.errorbar(xs, ys, yerr=es, marker="o" if main else ".", capsize=3,
                    alpha=1.0 if main else 0.35, linestyle="-" if entry["trains"] else "--",
                    label=entry["label"], color=COLORS.get(method))
    ax.set(xlabel="finetuning iteration", ylabel="test accuracy (%)",
           title="Accuracy vs iteration", xticks=range(last + 1))
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def plot_diversity(results: dict[str, Any], path: Path) -> None:
    """Consensus, embedding dissimilarity and cross-agent NLL per iteration."""
    fig, axes = _figure(len(DIVERSITY))
    last = int(results["config"]["iterations"])
    for ax, (key, title) in zip(axes[0], DIVERSITY, strict=True):
        for method, entry in results["methods"].items():
            def value(e: dict[str, Any], key: str = key) -> tuple[float, float] | None:
                v = e["eval"].get(key) if key.startswith("consensus") else \
                    e.get("diversity", {}).get(key)
                return None if v is None else (v, 0.0)

            xs, ys, _ = _series(results, method, last, value)
            if xs:
                ax.plot(xs, ys, marker="o", label=entry["label"], color=COLORS.get(method),
                        linestyle="-" if entry["trains"] else "--")
        ax.set(xlabel="finetuning iteration", title=title, xticks=range(last + 1))
    axes[0][0].legend(fontsize=7, loc="best")
    _save(fig, path)
