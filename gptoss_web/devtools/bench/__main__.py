"""`python -m gptoss_web.devtools.bench PART [PART ...]` (engine, pipeline, api, browser, routing, search,
load, sockets): run each part in turn, print its table and figures, and merge them into var/bench/latest.json.

Every part named runs, whatever the ones before it gave; the exit status is 1 when any of them missed a target
or failed, so `make bench` (engine, pipeline, api, browser, routing, search) fails at the end and says which.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gptoss_web.devtools.bench.api import API_TABLE, print_api, run_api
from gptoss_web.devtools.bench.browser import BROWSER_TABLE, print_browser, run_browser
from gptoss_web.devtools.bench.engine import ENGINE_TABLE, LATEST, merge_latest, print_table, run_engine
from gptoss_web.devtools.bench.pipeline import PIPELINE_TABLE, print_pipeline, run_pipeline
from gptoss_web.devtools.bench.routing import (
    ROUTING_TABLE,
    load_missed,
    print_load,
    print_routing,
    run_load,
    run_routing,
)
from gptoss_web.devtools.bench.search import SEARCH_TABLE, print_search, run_search
from gptoss_web.devtools.bench.sockets import TARGET_CPU_PCT, print_sockets, run_sockets
from gptoss_web.devtools.bench.table import Results


@dataclass(frozen=True, slots=True)
class Part:
    """One part of the bench: how it runs, how it prints, which of its targets a result misses."""

    run: Callable[[argparse.Namespace], Results]
    show: Callable[[Results], None]
    missed: Callable[[Results], list[str]]


def _sockets_missed(results: Results) -> list[str]:
    cpu = results["sockets"]["daphne_cpu_pct"]
    return [] if cpu < TARGET_CPU_PCT else [f"sockets.daphne_cpu_pct {cpu} (< {TARGET_CPU_PCT})"]


PARTS: dict[str, Part] = {
    "engine": Part(
        run=lambda args: run_engine(args.quick),
        show=print_table,
        missed=ENGINE_TABLE.missed_lines,
    ),
    "pipeline": Part(
        run=lambda args: run_pipeline(args.quick),
        show=print_pipeline,
        missed=PIPELINE_TABLE.missed_lines,
    ),
    "api": Part(
        run=lambda args: run_api(args.quick),
        show=print_api,
        missed=API_TABLE.missed_lines,
    ),
    "browser": Part(
        run=lambda args: run_browser(args.quick),
        show=print_browser,
        missed=BROWSER_TABLE.missed_lines,
    ),
    "search": Part(
        run=lambda args: run_search(args.quick),
        show=print_search,
        missed=SEARCH_TABLE.missed_lines,
    ),
    "routing": Part(
        run=lambda args: run_routing(args.quick),
        show=print_routing,
        missed=ROUTING_TABLE.missed_lines,
    ),
    "load": Part(run=lambda args: run_load(args.clients), show=print_load, missed=load_missed),
    "sockets": Part(
        run=lambda args: run_sockets(args.sockets, args.seconds), show=print_sockets, missed=_sockets_missed
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Run the parts named on the command line, all of them; return 1 when any missed a target or failed."""
    parser = argparse.ArgumentParser(prog="python -m gptoss_web.devtools.bench")
    parser.add_argument(
        "parts",
        nargs="+",
        choices=list(PARTS),
        help="engine: engine throughput and prefix reuse; pipeline: what WebSocket clients see, against "
        "the engine; api: what an OpenAI client sees of /v1/responses, against the engine; browser: what a "
        "person sees in chromium, against the engine; routing: two workers, cache-affine against "
        "shared-queue routing; search: full-text search over a million messages per user, against ILIKE; "
        "load: 200 WebSocket clients over two workers, with PostgreSQL's and Redis's work per answer; "
        "sockets: what idle sockets cost Daphne and PostgreSQL",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="engine, pipeline, search: fewer and shorter runs (search: a tenth of the data), for CI",
    )
    parser.add_argument("--out", type=Path, default=LATEST, help="results file to merge into")
    parser.add_argument("--clients", type=int, default=200, help="load: WebSocket clients sending at once")
    parser.add_argument("--sockets", type=int, default=1000, help="sockets: idle sockets to hold open")
    parser.add_argument("--seconds", type=float, default=60, help="sockets: how long to measure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("inference.runtime.engine.llama").setLevel(logging.ERROR)  # llama.cpp's load chatter
    failures: list[str] = []
    for name in args.parts:
        part = PARTS[name]
        try:
            results = part.run(args)
        except Exception:
            traceback.print_exc()
            failures.append(f"{name}: failed (traceback above)")
            continue
        part.show(results)
        print(json.dumps(results, indent=2))
        merge_latest(args.out, results)
        failures += [f"{name}: {missed} NOT met" for missed in part.missed(results)]
    if failures:
        print("Benchmark targets missed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
