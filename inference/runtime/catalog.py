"""Which model files a name stands for, where they live, and how `make run` gets them."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TINY = "tiny"
# The scripted test model that gptoss_web/devtools/tinymodel writes: the version in its name goes up whenever
# the generator's output changes, so that a stale file is never served.
TINY_FILE = "tiny-gpt-oss-v1.gguf"
DEFAULT_MODEL = "gpt-oss-20b"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_NAME_CHARS = 100  # what a conversation's model_name and a registry row's name hold


class ModelUnavailable(Exception):
    """The model's files are not here and cannot be fetched; the message says how to continue."""


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    files: tuple[str, ...]  # shards in order; llama.cpp opens the first and finds the rest


HUB_MODELS: dict[str, HubModel] = {
    "gpt-oss-20b": HubModel("ggml-org/gpt-oss-20b-GGUF", ("gpt-oss-20b-mxfp4.gguf",)),
    "gpt-oss-120b": HubModel(
        "ggml-org/gpt-oss-120b-GGUF",
        tuple(f"gpt-oss-120b-mxfp4-0000{i}-of-00003.gguf" for i in (1, 2, 3)),
    ),
}


def answer_tokens_default(context: int) -> int:
    """Return the tokens one answer may use when nothing sets them: half the context, at most 4096."""
    return min(4096, context // 2)


def queue_for_model(model_name: str) -> str:
    """Return the Celery queue whose workers serve *model_name* (unless its registry row names another)."""
    return "gpu." + re.sub(r"[^A-Za-z0-9_.-]", "-", model_name)


def models_dir(var_dir: Path) -> Path:
    return var_dir / "models"


def model_path(name: str, var_dir: Path, *, explicit_path: str = "") -> Path:
    """Return the GGUF file (first shard) that serves *name*; build the tiny model when asked for it."""
    if explicit_path:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"GPTOSS_MODEL_PATH={explicit_path} does not name a readable file.")
        return path
    if name == TINY:
        path = models_dir(var_dir) / TINY_FILE
        if not path.is_file():
            raise ModelUnavailable(
                f"The tiny test model is not built yet ({path} is missing): `make run` builds it, or "
                f"`python -m gptoss_web.devtools.tinymodel tiny {path}`."
            )
        return path
    hub = HUB_MODELS.get(name)
    if hub is None:
        known = ", ".join([TINY, *HUB_MODELS])
        raise ModelUnavailable(f"Unknown model {name!r}: use one of {known}, or set GPTOSS_MODEL_PATH.")
    missing = [f for f in hub.files if not (models_dir(var_dir) / f).is_file()]
    if missing:
        raise ModelUnavailable(missing_advice(name, var_dir, missing))
    return models_dir(var_dir) / hub.files[0]


def missing_advice(name: str, var_dir: Path, missing: list[str]) -> str:
    where = models_dir(var_dir)
    return (
        f"{name} is not downloaded ({', '.join(missing)} missing in {where}).\n"
        f"  To continue: `GPTOSS_MODEL=tiny make run` serves a small generated test model,\n"
        f"  `GPTOSS_MODEL_PATH=/path/to/{HUB_MODELS[name].files[0]} make run` serves a local gpt-oss GGUF,\n"
        f"  or download it where huggingface.co (or an HF_ENDPOINT mirror) is reachable."
    )


def served_model_name(env: Mapping[str, str]) -> str:
    """Return the name the served model goes by in conversations, queues, heartbeats and the UI.

    GPTOSS_MODEL_NAME when set. Else a file served by GPTOSS_MODEL_PATH goes by the file's name without
    `.gguf` and shard suffix (`my-oss-00001-of-00003.gguf` is `my-oss`), never by GPTOSS_MODEL, which the path
    overrides; taken from the path, not from inside the file, so the web process agrees with the worker
    without having the file. Else GPTOSS_MODEL.
    """
    name = env.get("GPTOSS_MODEL_NAME", "").strip()
    if name:
        return _checked_name("GPTOSS_MODEL_NAME", name, example="my-gpt-oss")
    path = env.get("GPTOSS_MODEL_PATH", "").strip()
    if not path:
        return _checked_name(
            "GPTOSS_MODEL", env.get("GPTOSS_MODEL", "").strip() or DEFAULT_MODEL, example="tiny"
        )
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", re.sub(r"\.gguf$", "", Path(path).name, flags=re.IGNORECASE))
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem).lstrip("-_.")[:MAX_NAME_CHARS] or "local-gguf"


def _checked_name(variable: str, name: str, *, example: str) -> str:
    """Return *name*, refused unless conversations, registry rows and queues can carry it."""
    if not re.match(NAME_PATTERN, name) or len(name) > MAX_NAME_CHARS:
        raise ValueError(
            f"{variable}={name} may hold only letters, digits, '.', '_' and '-', at most {MAX_NAME_CHARS} "
            f"characters, for example {variable}={example}"
        )
    return name
