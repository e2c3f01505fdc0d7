"""The plain runtime modules (token ids, GGUF reading) load without Django or llama.cpp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tokens_and_gguf_import_neither_django_nor_llama_cpp() -> None:
    probe = (
        "import sys, inference.gguf, inference.tokens; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'llama_cpp')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
