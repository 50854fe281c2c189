"""The card's pictures: PNG charts committed with the version and linked from its card by relative
paths, so the Hub shows them beside the tables they draw (and a local folder's card shows them too).

Rendered with matplotlib's Agg backend: no display, and the same bytes for the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.dataset.stats import RunStats

CHARTS_DIR = "charts"


@dataclass(frozen=True)
class Chart:
    title: str
    path: str  # relative to the version's root, as the card links it


def write_charts(
    root: Path, stats: RunStats, rounds: list[dict[str, Any]], coverage: list[dict[str, Any]]
) -> list[Chart]:
    """Each chart the version has data for, written under ``root/charts``."""
    import matplotlib

    matplotlib.use("Agg")
    (root / CHARTS_DIR).mkdir(exist_ok=True)
    charts: list[Chart] = []
    if stats.critics:
        names = [critic.critic for critic in stats.critics]
        rates = [critic.pass_rate for critic in stats.critics]
        charts.append(_bars(root, "pass_rate_per_critic", "Pass rate per critic", names, rates, ylabel="pass rate"))
    if coverage:
        cells = [cell["cell"] for cell in coverage]
        accepted = [cell["accepted"] for cell in coverage]
        target = coverage[0]["requested"]
        charts.append(
            _bars(root, "accepted_per_cell", "Accepted dialogues per persona cell", cells, accepted,
                  ylabel="accepted dialogues", target=target)
        )  # fmt: skip
    elif stats.cells:
        cells = [f"{cell['dimension']}={cell['cell']}" for cell in stats.cells]
        accepted = [cell["accepted"] for cell in stats.cells]
        charts.append(
            _bars(root, "accepted_per_cell", "Speakers in accepted dialogues per persona cell", cells, accepted,
                  ylabel="speakers")
        )  # fmt: skip
    per_round = [(f"round {r['round']}", r["tokens"] / r["accepted"]) for r in rounds if r.get("accepted")]
    if per_round:
        charts.append(
            _bars(root, "tokens_per_accepted", "Tokens (generation and critics) per accepted dialogue, by round",
                  [name for name, _ in per_round], [value for _, value in per_round], ylabel="tokens")
        )  # fmt: skip
    return charts


def _bars(
    root: Path,
    name: str,
    title: str,
    labels: list[str],
    values: list[float],
    *,
    ylabel: str,
    target: float | None = None,
) -> Chart:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(max(4.0, 0.45 * len(labels) + 2), 3.2), dpi=100)
    try:
        axes.bar(labels, values, color="#4c72b0")
        if target is not None:
            axes.axhline(target, color="#c44e52", linestyle="--", label=f"target {target:g}")
            axes.legend(loc="upper right", fontsize=8)
        axes.set_title(title, fontsize=10)
        axes.set_ylabel(ylabel, fontsize=9)
        if ylabel != "pass rate":  # counts and tokens: whole numbers on the axis
            axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(axis="x", labelsize=8)
        if len(labels) > 6:
            for tick in axes.get_xticklabels():
                tick.set(rotation=60, horizontalalignment="right", rotation_mode="anchor")
        figure.tight_layout()
        relative = f"{CHARTS_DIR}/{name}.png"
        # no timestamp in the file: the same figures give the same bytes, and git stores them once
        figure.savefig(root / relative, format="png", metadata={"Software": None})
    finally:
        plt.close(figure)
    return Chart(title, relative)


def charts_section(charts: list[Chart]) -> list[str]:
    if not charts:
        return []
    lines = ["## Charts", ""]
    for chart in charts:
        lines += [f"![{chart.title}]({chart.path})", ""]
    return lines
