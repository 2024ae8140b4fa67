"""A comparison written four ways, each atomically: a Markdown table like the paper's, CSV, JSON and a bar chart PNG."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from sgsim.atomic import atomic_output
from sgsim.evaluation.compare import Comparison
from sgsim.evaluation.paper import PAPER_DATASETS, PAPER_METHODS, PAPER_RESULTS, PAPER_SOURCE

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
        f"Top-1 / top-5 accuracy (%), averaged over held-out folds; zero-shot prompts: {comparison.prompts}; "
        f"audio embeddings in {comparison.precision}.",
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
        cached = max(result.clips - result.encoded, 0)  # evaluated clips that were not encoded in this run
        lines.append(
            f"- {result.encoder} on {result.dataset}: {result.clips} clips evaluated, {len(result.problems)} left out, "
            f"{result.encoded} encoded, {cached or 'none'} from the cache, {result.seconds:.1f} s"
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


def _colours(count: int) -> list:
    """`count` colours, none repeated: tab10, tab20, then evenly spaced along a perceptual rainbow."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](0.05 + 0.9 * i / (count - 1)) for i in range(count)]


def _paper_top1(model: str, protocol: str, layout: str) -> float | None:
    """The paper's top-1 for our registry name `model` under `protocol` on the dataset layout, if it published one."""
    return PAPER_RESULTS.get((PAPER_METHODS.get(model, ""), protocol), {}).get(layout)


def bar_chart(comparison: Comparison, with_paper: bool = False):
    """A matplotlib Figure: a panel per dataset, a group per method (encoder label and protocol) with our fold-averaged
    top-1 (error bar: standard deviation over folds) and, with `with_paper`, the paper's bar beside it (hatched); the
    paper's methods nobody ran follow on their own. One colour per method, values on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot

    datasets = _datasets(comparison)
    ours = list(dict.fromkeys((r.encoder, p.protocol) for r in comparison.results for p in r.protocols))
    shown_paper = {(PAPER_METHODS.get(r.model, ""), p.protocol) for r in comparison.results for p in r.protocols}
    paper_only = [key for key in PAPER_RESULTS if with_paper and key not in shown_paper
                  and any(layout in PAPER_RESULTS[key] for layout in datasets.values())]
    colours = dict(zip([*ours, *paper_only], _colours(len(ours) + len(paper_only))))
    groups = len(ours) + len(paper_only)
    figure, panels = pyplot.subplots(1, len(datasets), squeeze=False, sharey=True,
                                     figsize=(max(6.0, 1.5 + 1.1 * groups) * len(datasets), 5.0))
    width = 0.38 if with_paper else 0.7
    for panel, (dataset, layout) in zip(panels[0], datasets.items()):
        ticks, names = [], []
        for x, (label, protocol) in enumerate(ours):
            found = [(r, p) for r in comparison.results if r.dataset == dataset and r.encoder == label
                     for p in r.protocols if p.protocol == protocol]
            ticks.append(x)
            names.append(f"{label}\n{protocol}")
            if not found:
                continue
            result, scores = found[0]
            paper = _paper_top1(result.model, protocol, layout) if with_paper else None
            offset = -width / 2 if with_paper else 0.0
            spread = float(np.std([fold.top1 for fold in scores.folds])) if len(scores.folds) > 1 else 0.0
            bars = panel.bar(x + offset, scores.top1, width, yerr=spread, capsize=4, color=colours[(label, protocol)],
                             label=f"{label} {protocol}")
            panel.bar_label(bars, fmt="%.1f", padding=2, fontsize="small")
            if paper is not None:
                bars = panel.bar(x + width / 2, paper, width, color=colours[(label, protocol)], alpha=0.45, hatch="//",
                                 edgecolor="black", label=f"{PAPER_METHODS[result.model]} {protocol} (paper)")
                panel.bar_label(bars, fmt="%.1f", padding=2, fontsize="small")
        for x, key in enumerate(paper_only, start=len(ours)):
            if layout in PAPER_RESULTS[key]:
                bars = panel.bar(x, PAPER_RESULTS[key][layout], width, color=colours[key], alpha=0.45, hatch="//",
                                 edgecolor="black", label=f"{key[0]} {key[1]} (paper)")
                panel.bar_label(bars, fmt="%.1f", padding=2, fontsize="small")
            ticks.append(x)
            names.append(f"{key[0]}\n{key[1]} (paper)")
        clips = max((r.clips for r in comparison.results if r.dataset == dataset), default=0)
        folds = max((len(p.folds) for r in comparison.results if r.dataset == dataset for p in r.protocols), default=0)
        title = f"{dataset}: {clips} clips, {folds} held-out folds"
        if with_paper and layout in PAPER_DATASETS:
            title += f"\npaper (hatched): {PAPER_DATASETS[layout]}"
        panel.set_title(title, fontsize="medium")
        panel.set_xticks(ticks, names, fontsize="small", rotation=30 if groups > 4 else 0, ha="right" if groups > 4 else "center")
        panel.set_ylim(0, 105)
    panels[0][0].set_ylabel("top-1 accuracy (%), mean ± std over folds")
    figure.suptitle(f"Audio encoders: top-1 accuracy (zero-shot prompts: {comparison.prompts})")
    figure.tight_layout()
    return figure


def bar_chart_png(comparison: Comparison, with_paper: bool = False) -> bytes:
    """bar_chart as PNG bytes."""
    from matplotlib import pyplot

    figure = bar_chart(comparison, with_paper)
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
