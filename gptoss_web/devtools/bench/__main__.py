"""`python -m gptoss_web.devtools.bench engine|pipeline|api|sockets`: run one part of `make bench`, print its
table and figures, and merge them into var/bench/latest.json."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from gptoss_web.devtools.bench.api import print_api, run_api
from gptoss_web.devtools.bench.engine import LATEST, merge_latest, print_table, run_engine
from gptoss_web.devtools.bench.pipeline import print_pipeline, run_pipeline
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
    api_parser = sub.add_parser("api", help="what an OpenAI client sees of /v1/responses, against the engine")
    api_parser.add_argument("--quick", action="store_true", help="fewer and shorter answers")
    api_parser.add_argument("--out", type=Path, default=LATEST, help="results file to merge into")
    sockets_parser = sub.add_parser("sockets", help="what idle sockets cost Daphne and PostgreSQL")
    sockets_parser.add_argument("--sockets", type=int, default=1000, help="idle sockets to hold open")
    sockets_parser.add_argument("--seconds", type=float, default=60, help="how long to measure")
    sockets_parser.add_argument("--out", type=Path, default=LATEST, help="results file to merge into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("inference.runtime.engine.llama").setLevel(logging.ERROR)  # llama.cpp's load chatter
    if args.part == "sockets":
        results = run_sockets(args.sockets, args.seconds)
        print_sockets(results)
    elif args.part == "api":
        results = run_api(args.quick)
        print_api(results)
    elif args.part == "pipeline":
        results = run_pipeline(args.quick)
        print_pipeline(results)
    else:
        results = run_engine(args.quick)
        print_table(results)
    print(json.dumps(results, indent=2))
    merge_latest(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
