"""`python -m gptoss_web.devtools.bench engine|pipeline|search|sockets`: run one part of `make bench`, print
its table and figures, merge them into var/bench/latest.json, and exit 1 when a target is missed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from gptoss_web.devtools.bench.engine import LATEST, merge_latest, print_table, run_engine
from gptoss_web.devtools.bench.pipeline import print_pipeline, run_pipeline
from gptoss_web.devtools.bench.search import print_search, run_search
from gptoss_web.devtools.bench.sockets import print_sockets, run_sockets


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the requested benchmark part."""
    parser = argparse.ArgumentParser(prog="python -m gptoss_web.devtools.bench")
    sub = parser.add_subparsers(dest="part", required=True)
    engine_parser = sub.add_parser("engine", help="engine throughput and prefix reuse")
    engine_parser.add_argument("--quick", action="store_true", help="fewer tokens, for CI")
    engine_parser.add_argument("--out", type=Path, default=LATEST, help="results file to merge into")
    pipeline_parser = sub.add_parser("pipeline", help="what WebSocket clients see, against the engine")
    pipeline_parser.add_argument("--quick", action="store_true", help="fewer and shorter answers")
    pipeline_parser.add_argument("--out", type=Path, default=LATEST, help="results file to merge into")
    sockets_parser = sub.add_parser("sockets", help="what idle sockets cost Daphne and PostgreSQL")
    sockets_parser.add_argument("--sockets", type=int, default=1000, help="idle sockets to hold open")
    sockets_parser.add_argument("--seconds", type=float, default=60, help="how long to measure")
    sockets_parser.add_argument("--out", type=Path, default=LATEST, help="results file to merge into")
    search_parser = sub.add_parser("search", help="full-text search over a million messages, against ILIKE")
    search_parser.add_argument("--quick", action="store_true", help="a tenth of the data")
    search_parser.add_argument("--out", type=Path, default=LATEST, help="results file to merge into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("inference.runtime.engine.llama").setLevel(logging.ERROR)  # llama.cpp's load chatter
    if args.part == "sockets":
        results = run_sockets(args.sockets, args.seconds)
        print_sockets(results)
    elif args.part == "search":
        results = run_search(args.quick)
        print_search(results)
    elif args.part == "pipeline":
        results = run_pipeline(args.quick)
        print_pipeline(results)
    else:
        results = run_engine(args.quick)
        print_table(results)
    print(json.dumps(results, indent=2))
    merge_latest(args.out, results)
    missed = [
        name
        for key, targets in results.items()
        if key.endswith("_targets")
        for name, target in targets.items()
        if not target["met"]
    ]
    if missed:
        print(f"Targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
