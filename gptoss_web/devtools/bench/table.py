"""The tables `make bench` prints: each row's figure, how its value reads, and the target it must meet.

The rows live here and in the parts that fill them (engine.py, pipeline.py), nowhere else: the bench prints
them as the Markdown tables of docs/benchmarks.md (same figures, same targets), and
tests/devtools/test_bench.py checks that the document lists exactly these rows. A part whose results miss a
target makes the bench exit with status 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Results = dict[str, Any]

__all__ = ["Results", "Row", "Table", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    """A bound on one figure of the results: ``results[section][key] op bound``.

    ``op`` "all" means the figure equals the total at ``results[section][total]`` (every client completed).
    """

    figure: str  # "engine.speedup_8": section and key in var/bench/latest.json
    op: Literal[">=", "<=", "all"]
    bound: float = 0.0
    total: str = ""  # for "all": the key of the total in the same section

    def value(self, results: Results) -> Any:
        section, key = self.figure.split(".")
        return results[section][key]

    def met(self, results: Results) -> bool:
        """Return whether *results* meet this target."""
        value = self.value(results)
        if self.op == ">=":
            return bool(value >= self.bound)
        if self.op == "<=":
            return bool(value <= self.bound)
        section = self.figure.split(".")[0]
        return bool(value == results[section][self.total])

    def __str__(self) -> str:
        if self.op == "all":
            return "all"
        sign = "≥" if self.op == ">=" else "≤"
        return f"{sign} {self.bound:g}"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a table: what it measures (as docs/benchmarks.md names it), its value, its target."""

    figure: str
    value: Callable[[Results], str]
    target: Target | None = None


@dataclass(frozen=True, slots=True)
class Table:
    """The rows one part of the bench prints, under the heading docs/benchmarks.md gives its table."""

    heading: str
    rows: Sequence[Row]

    def targets(self) -> list[Target]:
        return [row.target for row in self.rows if row.target is not None]

    def missed(self, results: Results) -> list[Target]:
        """Return the targets *results* miss."""
        return [target for target in self.targets() if not target.met(results)]

    def missed_lines(self, results: Results) -> list[str]:
        """Return a line per target *results* miss: the figure, its value and the target."""
        return [f"{t.figure} {t.value(results)} ({t})" for t in self.missed(results)]

    def markdown(self, results: Results) -> str:
        """Return the table as docs/benchmarks.md shows it, each target marked met or NOT met."""
        lines = ["| Figure | Value | Target |", "| --- | --- | --- |"]
        for row in self.rows:
            target = row.target
            mark = "" if target is None else f"{target} {'met' if target.met(results) else 'NOT met'}"
            lines.append(f"| {row.figure} | {row.value(results)} | {mark} |")
        return "\n".join(lines)

    def target_summary(self, results: Results) -> dict[str, dict[str, Any]]:
        """Return every target with its value and whether it was met, for latest.json."""
        return {
            t.figure: {"value": t.value(results), "target": str(t), "met": t.met(results)}
            for t in self.targets()
        }
