"""The command line: ``python -m gptoss_web.devtools.tinymodel tiny OUT.gguf`` writes the scripted
model, ``... random --shape NAME [--seed N] OUT.gguf`` a random one."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gptoss_web.devtools.tinymodel import SHAPES, write_random_model, write_tiny_model

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: ``tiny OUT.gguf`` or ``random --shape NAME [--seed N] OUT.gguf``."""
    parser = argparse.ArgumentParser(prog="python -m gptoss_web.devtools.tinymodel")
    sub = parser.add_subparsers(dest="kind", required=True)
    tiny = sub.add_parser("tiny", help="the scripted test model")
    tiny.add_argument("out", type=Path)
    rnd = sub.add_parser("random", help="random weights in a given shape")
    rnd.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    rnd.add_argument("--seed", type=int, default=0)
    rnd.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.kind == "tiny":
        write_tiny_model(args.out)
    else:
        write_random_model(args.out, SHAPES[args.shape], seed=args.seed)
    logger.info("wrote %s (%.1f MB)", args.out, args.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
