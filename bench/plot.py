"""Bar charts of one bench run (``scripts/bench --plot FILE.png``), drawn with matplotlib.

matplotlib is not one of proxyd's dependencies and is imported only here, only when a plot
is asked for: ``.venv/bin/pip install matplotlib`` to get one. Panels, each with one bar per
target and workload: qps over direct, CPU of the middle process per query, and, when those
workloads ran, the latency added over direct (1 client) and the RSS per idle client.
"""

from __future__ import annotations

from typing import Any

# (row key, title, issue 10's goal for proxyd or None)
_PANELS = (
    ("x_direct", "qps / direct qps", None),
    ("cpu_us_per_query", "CPU of the middle process, us per query", None),
    ("added_p50_us", "latency, 1 client: added median over direct, us", 50.0),
    ("kib_per_client", "idle: RSS of the middle process per client, KiB", 10.0),
)


def write(rows: list[dict[str, Any]], path: str) -> str | None:
    """Draw `rows` (compare.report's) to `path`; returns why not, or None once written."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (.venv/bin/pip install matplotlib)"
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(r["target"] for r in rows))
    panels = []
    for key, title, goal in _PANELS:
        workloads = list(dict.fromkeys(r["workload"] for r in rows if r.get(key) is not None))
        if workloads:
            panels.append((key, title, goal, workloads))
    if not panels:
        return "nothing to plot"
    widest = max(len(workloads) for *_, workloads in panels)
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(max(6.0, 1.5 * widest + 2), 2.8 * len(panels)), squeeze=False
    )
    width = 0.8 / len(targets)
    for ax, (key, title, goal, workloads) in zip(axes[:, 0], panels, strict=True):
        for i, target in enumerate(targets):
            values = [
                next(
                    (r.get(key) for r in rows if r["workload"] == w and r["target"] == target), None
                )
                for w in workloads
            ]
            offset = (i - (len(targets) - 1) / 2) * width
            bars = ax.bar(
                [x + offset for x in range(len(workloads))],
                [0 if v is None else v for v in values],
                width,
                label=target,
            )
            ax.bar_label(bars, labels=["" if v is None else f"{v:.3g}" for v in values], fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(workloads)), workloads)
        ax.axhline(0, color="black", linewidth=0.5)
        if goal is not None:
            line = ax.axhline(goal, color="red", linestyle="--", linewidth=1, label="proxyd's goal")
            ax.legend(handles=[line], fontsize=8)
        ax.margins(y=0.15)
    axes[0, 0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return None
