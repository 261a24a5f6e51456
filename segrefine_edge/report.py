"""Present evaluation results: a terminal table, and a Markdown report with PNG plots.

matplotlib is imported only for ``--report`` (the 'report' extra), so evaluating on a
device needs nothing beyond the runtime.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from segrefine_edge.errors import MissingExtraError
from segrefine_edge.metrics.boundary import BF_TOLERANCE

SUMMARY_ROWS = (
    ("mIoU", "miou"),
    ("pixel accuracy", "pixel_accuracy"),
    ("FW IoU", "frequency_weighted_iou"),
    ("Boundary F", "boundary_f"),
    ("Boundary IoU", "boundary_iou"),
    ("TC", "temporal_consistency"),
    ("flicker", "flicker"),
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _rows(results: list[dict]) -> list[list[str]]:
    """The table as rows of strings: summary metrics, latency, then per-class IoU / BF."""
    rows = [["metric", *(r["name"] for r in results)]]
    rows += [[label, *(_cell(r[key]) for r in results)] for label, key in SUMMARY_ROWS]
    rows.append(["frame ms (p50)", *(_cell(r["latency_ms"]["frame_p50"]) for r in results)])
    rows.append(["invoke ms (p50)", *(_cell(r["latency_ms"]["invoke_p50"]) for r in results)])
    for name in results[0]["per_class"]:
        rows.append([f"IoU / BF {name}", *(f"{_cell(r['per_class'][name]['iou'])} / "
                                           f"{_cell(r['per_class'][name]['boundary_f'])}" for r in results)])
    return rows


def format_table(results: list[dict]) -> str:
    """Fixed-width table, one column per model."""
    rows = _rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: list[dict]) -> str:
    rows = _rows(results)
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(out)


def check_report_extra() -> None:
    """Refuse ``--report`` before any scoring when matplotlib (the 'report' extra) is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError("--report needs matplotlib: pip install 'segrefine-edge[report]'")


def write_report(folder: Path, results: list[dict], context: str) -> Path:
    """README.md with the table and three plots: per-class IoU, Boundary F against the
    tolerance, latency. Returns the Markdown file's path."""
    check_report_extra()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = list(results[0]["per_class"])
    width = 0.8 / len(results)

    fig, ax = plt.subplots(figsize=(max(6.0, len(names) * 0.7), 3.6))
    for i, r in enumerate(results):
        values = [r["per_class"][n]["iou"] or 0.0 for n in names]
        ax.bar([k + i * width for k in range(len(names))], values, width, label=r["name"])
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names, rotation=45, ha="right")
    ax.set_ylabel("IoU")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "per_class_iou.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for r in results:
        points = r["boundary_f_curve"]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=r["name"])
    ax.axvline(BF_TOLERANCE, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("tolerance (fraction of the image diagonal)")
    ax.set_ylabel("mean Boundary F")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "boundary_f_tolerance.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3))
    p50 = [r["latency_ms"]["frame_p50"] or 0.0 for r in results]
    ax.barh([r["name"] for r in results], p50)
    ax.set_xlabel("ms per frame (p50, preprocess to labels)")
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=110)
    plt.close(fig)

    text = "\n\n".join([
        "# segrefine-edge evaluation",
        context,
        markdown_table(results),
        "![per-class IoU](per_class_iou.png)",
        "![Boundary F against tolerance](boundary_f_tolerance.png)",
        "![latency](latency.png)",
    ])
    path = folder / "README.md"
    path.write_text(text + "\n")
    return path
