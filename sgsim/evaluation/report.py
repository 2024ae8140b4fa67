"""A comparison written four ways, each atomically: a Markdown table like the paper's, CSV, JSON and a bar chart PNG."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from sgsim.atomic import atomic_output
from sgsim.evaluation.compare import Comparison
from sgsim.evaluation.paper import PAPER_RESULTS, PAPER_SOURCE

REPORT_STEM = "encoders"


def _rows(comparison: Comparison, with_paper: bool) -> list[dict]:
    """One row per (source, method, protocol, dataset, fold or mean) with top-1/top-5 in percent."""
    rows = []
    for result in comparison.results:
        for protocol in result.protocols:
            base = {"source": "ours", "method": result.encoder, "protocol": protocol.protocol, "dataset": result.dataset}
            for fold in protocol.folds:
                rows.append({**base, "fold": str(fold.fold), "clips": fold.clips, "top1": fold.top1, "top5": fold.top5})
            rows.append({**base, "fold": "mean", "clips": result.clips, "top1": protocol.top1, "top5": protocol.top5})
    if with_paper:
        for dataset, layout in _datasets(comparison).items():
            for (method, protocol), numbers in PAPER_RESULTS.items():
                if layout in numbers:
                    rows.append({"source": "paper", "method": method, "protocol": protocol, "dataset": dataset,
                                 "fold": "mean", "clips": "", "top1": numbers[layout], "top5": ""})
    return rows


def _datasets(comparison: Comparison) -> dict[str, str]:
    """Dataset names in first-seen order, each with its layout (the key of the paper's numbers)."""
    return {result.dataset: result.layout for result in comparison.results}


def _percent(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "–"


def markdown(comparison: Comparison, with_paper: bool = False) -> str:
    """The paper-style table (methods x datasets, top-1 / top-5 averaged over folds), then folds, skips and problems."""
    datasets = list(_datasets(comparison))
    means = {}
    for row in _rows(comparison, with_paper):
        if row["fold"] == "mean":
            means.setdefault((row["source"], row["method"], row["protocol"]), {})[row["dataset"]] = row
    lines = [
        f"Top-1 / top-5 accuracy (%), averaged over held-out folds; zero-shot prompts: {comparison.prompts}.",
        "",
        "| method | protocol | " + " | ".join(datasets) + " |",
        "| --- | --- | " + " | ".join("---" for _ in datasets) + " |",
    ]
    for (source, method, protocol), cells in means.items():
        name = f"{method} (paper)" if source == "paper" else method
        values = [
            f"{_percent(cells[d]['top1'])} / {_percent(cells[d]['top5'])}" if d in cells else "–" for d in datasets
        ]
        lines.append(f"| {name} | {protocol} | " + " | ".join(values) + " |")
    if with_paper:
        lines += ["", f"Paper numbers: {PAPER_SOURCE}, top-1 on the full datasets."]
    lines += ["", "## Per fold", "", "| encoder | dataset | protocol | fold | clips | top-1 | top-5 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for result in comparison.results:
        for protocol in result.protocols:
            for fold in protocol.folds:
                lines.append(
                    f"| {result.encoder} | {result.dataset} | {protocol.protocol} | {fold.fold} | {fold.clips} | "
                    f"{fold.top1:.1f} | {fold.top5:.1f} |"
                )
    lines += ["", "## Runs", ""]
    for result in comparison.results:
        lines.append(
            f"- {result.encoder} on {result.dataset}: {result.clips} clips evaluated, {len(result.problems)} left out, "
            f"{result.encoded} encoded (the rest from the cache), {result.seconds:.1f} s"
        )
    for name, reason in comparison.skipped:
        lines.append(f"- skipped {name}: {reason}")
    return "\n".join(lines) + "\n"


def csv_text(comparison: Comparison, with_paper: bool = False) -> str:
    """Long-format CSV: source, method, protocol, dataset, fold (or mean), clips, top1, top5."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["source", "method", "protocol", "dataset", "fold", "clips", "top1", "top5"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rows(comparison, with_paper))
    return buffer.getvalue()


def json_text(comparison: Comparison, with_paper: bool = False) -> str:
    """Every measured number, the per-class confusion summaries, problems and skips; the paper's numbers when asked."""
    content = asdict(comparison)
    if with_paper:
        content["paper"] = {
            "source": PAPER_SOURCE,
            "results": [{"method": m, "protocol": p, "top1": numbers} for (m, p), numbers in PAPER_RESULTS.items()],
        }
    return json.dumps(content, indent=2, default=str) + "\n"


def bar_chart_png(comparison: Comparison, with_paper: bool = False) -> bytes:
    """Grouped bars of fold-averaged top-1 per dataset, one bar per (method, protocol); paper bars hatched."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = [row for row in _rows(comparison, with_paper) if row["fold"] == "mean"]
    datasets = list(_datasets(comparison))
    series = list(dict.fromkeys((row["source"], row["method"], row["protocol"]) for row in rows))
    figure, axes = pyplot.subplots(figsize=(max(6.0, 1.2 + 0.5 * len(series) * max(1, len(datasets))), 4.5))
    width = 0.8 / max(1, len(series))
    for position, key in enumerate(series):
        values = {row["dataset"]: row["top1"] for row in rows if (row["source"], row["method"], row["protocol"]) == key}
        xs = [d + position * width for d, name in enumerate(datasets) if name in values]
        heights = [values[name] for name in datasets if name in values]
        label = f"{key[1]} {key[2]}" + (" (paper)" if key[0] == "paper" else "")
        axes.bar(xs, heights, width, label=label, hatch="//" if key[0] == "paper" else None)
    axes.set_xticks([d + 0.4 - width / 2 for d in range(len(datasets))], datasets)
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()


def write_reports(comparison: Comparison, folder: str | Path, with_paper: bool = False) -> list[Path]:
    """Write encoders.md, .csv, .json and .png into `folder`; returns their paths."""
    folder = Path(folder)
    contents = {
        ".md": markdown(comparison, with_paper).encode(),
        ".csv": csv_text(comparison, with_paper).encode(),
        ".json": json_text(comparison, with_paper).encode(),
        ".png": bar_chart_png(comparison, with_paper),
    }
    paths = []
    for suffix, data in contents.items():
        path = folder / f"{REPORT_STEM}{suffix}"
        with atomic_output(path) as stream:
            stream.write(data)
        paths.append(path)
    return paths
