"""Plain runtime modules (token ids, GGUF reading, harmony, vocabulary, model files) load without Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def loaded_after_import(modules: str) -> list[str]:
    """Import *modules* in a fresh interpreter; return which of django and llama_cpp it loaded."""
    probe = (
        f"import sys, {modules}; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'llama_cpp'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_tokens_and_gguf_import_neither_django_nor_llama_cpp() -> None:
    assert loaded_after_import("inference.runtime.gguf, inference.runtime.tokens") == []


@pytest.mark.parametrize(
    "module",
    [
        "inference.runtime.harmony",
        "inference.runtime.vocab",
        "gptoss_web.devtools.tinymodel",
        "inference.runtime.engine.settings",
    ],
)
def test_runtime_modules_import_no_django(module: str) -> None:
    assert "django" not in loaded_after_import(module)
