"""`make bench`: it prints the tables of docs/benchmarks.md, and a missed target fails it."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from gptoss_web.devtools.bench import __main__ as bench
from gptoss_web.devtools.bench.api import API_TABLE
from gptoss_web.devtools.bench.browser import BROWSER_TABLE
from gptoss_web.devtools.bench.engine import ENGINE_TABLE
from gptoss_web.devtools.bench.pipeline import PIPELINE_TABLE
from gptoss_web.devtools.bench.routing import ROUTING_TABLE
from gptoss_web.devtools.bench.search import SEARCH_TABLE
from gptoss_web.devtools.bench.table import Table

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"

ENGINE_RESULTS: dict[str, Any] = {
    "engine": {
        "model": "random-tiny.gguf",
        "threads": 1,
        "single_stream_tps": 1000.0,
        "aggregate_tps": {"1": 1000.0, "2": 1200.0, "4": 1500.0, "8": 1600.0},
        "bare_loop_8_tps": 1610.0,
        "high_level_tps": 1010.0,
        "speedup_8": 1.6,
        "batch_efficiency": 0.99,
        "overhead_ratio": 0.99,
    },
    "sampling": {
        "python_ms_per_step": {
            "chains": {"8": 2.0, "16": 4.0, "32": 8.0},
            "batched": {"8": 1.0, "16": 1.5, "32": 2.5},
        },
        "sampling_gain_32": 3.2,
    },
    "prefix": {
        "model": "random-bench.gguf",
        "ttft_cold_ms": 440.0,
        "ttft_warm_ms": 24.0,
        "tokens_cold": 2000,
        "tokens_warm": 41,
        "speedup": 18.3,
        "busy_ttft_cold_ms": 450.0,
        "busy_ttft_reused_ms": 30.0,
        "busy_tokens_cold": 2000,
        "busy_tokens_reused": 56,
        "busy_speedup": 15.0,
    },
}
PIPELINE_RESULTS: dict[str, Any] = {
    "pipeline": {
        "raw_tps": 600.0,
        "ws_tps": 600.0,
        "ratio": 1.0,
        "ratios": [0.99, 1.01],
        "ttft_overhead_ms_p50": 37.0,
    },
    "ws50": {
        "clients": 50,
        "completed": 50,
        "text_equal_to_stored": 50,
        "same_answer_as_alone": 50,
        "p95_lag_ms": 36.5,
        "p50_lag_ms": 4.2,
        "seconds": 38.5,
    },
}


def _documented_rows(table: Table) -> list[tuple[str, str]]:
    """Return (figure, target less "met") of the first Figure/Value/Target table under *table*'s heading."""
    lines = DOCS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(table.heading))
    header = next(i for i in range(start, len(lines)) if lines[i] == "| Figure | Value | Target |")
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        figure, _value, target = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append((figure, target.removesuffix(" NOT met").removesuffix(" met")))
    return rows


@pytest.mark.parametrize(
    "table",
    [ENGINE_TABLE, PIPELINE_TABLE, API_TABLE, BROWSER_TABLE, ROUTING_TABLE, SEARCH_TABLE],
    ids=["engine", "pipeline", "api", "browser", "routing", "search"],
)
def test_docs_list_the_figures_and_targets_the_bench_prints(table: Table) -> None:
    assert _documented_rows(table) == [(row.figure, str(row.target or "")) for row in table.rows]


def _run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **results: dict[str, Any] | Exception
) -> tuple[int, list[str]]:
    """Run the bench on fake parts that return *results* (or raise); return its status and the parts run."""
    ran: list[str] = []

    def fake(name: str, outcome: dict[str, Any] | Exception) -> Any:
        def run(_args: object) -> dict[str, Any]:
            ran.append(name)
            if isinstance(outcome, Exception):
                raise outcome
            return copy.deepcopy(outcome)

        return run

    for name, outcome in results.items():
        monkeypatch.setitem(
            bench.PARTS, name, dataclasses.replace(bench.PARTS[name], run=fake(name, outcome))
        )
    status = bench.main([*results, "--out", str(tmp_path / "latest.json")])
    return status, ran


def test_the_bench_exits_0_when_every_target_is_met(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, ran = _run(monkeypatch, tmp_path, engine=ENGINE_RESULTS, pipeline=PIPELINE_RESULTS)
    assert (status, ran) == (0, ["engine", "pipeline"])
    out = capsys.readouterr().out
    assert "| `engine.speedup_8` (8 streams / 1 stream) | 1.60 | ≥ 1.4 met |" in out
    assert "NOT met" not in out
    assert json.loads((tmp_path / "latest.json").read_text())["ws50"]["completed"] == 50


def test_a_missed_target_makes_the_bench_exit_1_after_running_every_part(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = copy.deepcopy(ENGINE_RESULTS)
    slow["engine"]["speedup_8"] = 1.1
    status, ran = _run(monkeypatch, tmp_path, engine=slow, pipeline=PIPELINE_RESULTS)
    assert (status, ran) == (1, ["engine", "pipeline"])
    captured = capsys.readouterr()
    assert "| `engine.speedup_8` (8 streams / 1 stream) | 1.10 | ≥ 1.4 NOT met |" in captured.out
    assert "engine: engine.speedup_8 1.1 (≥ 1.4) NOT met" in captured.err


def test_a_pipeline_with_a_lost_client_fails_the_bench(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lost = copy.deepcopy(PIPELINE_RESULTS)
    lost["ws50"]["completed"] = 49
    status, _ = _run(monkeypatch, tmp_path, engine=ENGINE_RESULTS, pipeline=lost)
    assert status == 1


def test_a_part_that_fails_does_not_stop_the_next_and_fails_the_bench(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, ran = _run(
        monkeypatch, tmp_path, engine=RuntimeError("bare loop: decode failed"), pipeline=PIPELINE_RESULTS
    )
    assert (status, ran) == (1, ["engine", "pipeline"])
    captured = capsys.readouterr()
    assert "RuntimeError: bare loop: decode failed" in captured.err
    assert "engine: failed" in captured.err
    assert "`pipeline.ratio`" in captured.out
