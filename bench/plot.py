"""Scale curves as SVG plots and Markdown tables, written into docs/scaling/ by the sweeps.

A sweep measures one quantity against one variable for a few series (ingest against its
ceiling, the API against its baseline); `Curve` holds them, `write` saves the SVG (matplotlib,
without a date in the file, so a rerun that measures the same figures leaves the same file) and
a Markdown table beside it, and returns the table for the bench to print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "scaling"


@dataclass
class Series:
    """One line of a plot: a label and its points (x, y); y None where not measured."""

    label: str
    x: list[float] = field(default_factory=list)
    y: list[float | None] = field(default_factory=list)

    def add(self, x: float, y: float | None) -> None:
        self.x.append(x)
        self.y.append(y)


@dataclass
class Curve:
    """A plot: what it shows, its axes, and its series."""

    name: str  # file stem under docs/scaling/
    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    logx: bool = False
    logy: bool = False
    note: str = ""  # one line under the plot: the machine, the command

    def table(self, *, digits: int = 1) -> str:
        """The curve as a Markdown table: one row per x, one column per series."""
        xs = sorted({x for s in self.series for x in s.x})
        head = f"| {self.xlabel} | " + " | ".join(s.label for s in self.series) + " |"
        rule = "|---:|" + "---:|" * len(self.series)
        rows = [head, rule]
        for x in xs:
            cells = []
            for s in self.series:
                y = dict(zip(s.x, s.y, strict=True)).get(x)
                cells.append("" if y is None else f"{y:,.{digits}f}")
            rows.append(f"| {_number(x)} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


def write(curve: Curve, out: Path = OUT, *, digits: int = 1) -> str:
    """Save `<name>.svg` and `<name>.md` under `out`; returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = curve.name  # stable element ids between runs
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for s in curve.series:
        points = [(x, y) for x, y in zip(s.x, s.y, strict=True) if y is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=s.label)
    if curve.logx:
        ax.set_xscale("log")
    if curve.logy:
        ax.set_yscale("log")
    ax.set_title(curve.title)
    ax.set_xlabel(curve.xlabel)
    ax.set_ylabel(curve.ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if curve.note:
        fig.text(0.01, 0.01, curve.note, fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.04 if curve.note else 0, 1, 1))
    fig.savefig(out / f"{curve.name}.svg", format="svg", metadata={"Date": None})
    plt.close(fig)
    table = curve.table(digits=digits)
    (out / f"{curve.name}.md").write_text(f"{curve.title}\n\n{table}\n", encoding="utf-8")
    return table


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Element-wise ratios (for a 'x the baseline' series)."""
    return [n / d for n, d in zip(numerators, denominators, strict=True)]
