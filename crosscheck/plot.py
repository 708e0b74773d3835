"""`--plot PATH`: a PNG of error headroom, the worst error / tolerance per case and dtype."""

from __future__ import annotations

from .report import summary_rows
from .results import Report


def write_plot(report: Report, path: str) -> None:
    """One row per case, one marker per dtype, on a log scale; 1 is the tolerance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary_rows(report)
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    floor = 1e-4  # exact agreement (ratio 0) is drawn at the left edge
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(layers) + 1.6))
    markers = {"float64": "o", "float32": "s", "bfloat16": "^", "float16": "D"}
    for k, dtype in enumerate(dtypes):
        ys, xs, colors = [], [], []
        for r in rows:
            if r["dtype"] == dtype:
                ys.append(layers.index(r["layer"]) + (k - (len(dtypes) - 1) / 2) * 0.15)
                xs.append(min(max(r["worst"], floor), 1e3))
                colors.append("tab:red" if r["failed"] else None)
        ax.scatter(xs, ys, marker=markers.get(dtype, "o"), label=dtype, s=22, alpha=0.85,
                   edgecolors=[c or "none" for c in colors])
    ax.axvline(1.0, color="tab:red", lw=1.2, ls="--", label="tolerance")
    ax.axvline(0.5, color="tab:orange", lw=0.8, ls=":", label="half the tolerance")
    ax.set_xscale("log")
    ax.set_xlim(floor, max(10.0, max((min(r["worst"], 1e3) for r in rows), default=1) * 2))
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels(layers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("worst error / tolerance (log scale; right of the dashed line fails)")
    ax.set_title(f"crosscheck headroom: {report.trials} trials, seed {report.seed}, {report.device}", fontsize=10)
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
