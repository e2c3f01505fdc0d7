"""OpenAI's Codex CLI (npm @openai/codex, pinned in package.json), run non-interactively against the live
stack: it speaks only the Responses API, statelessly (`store: false`, its reasoning sealed and sent back)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chat.models import Conversation
from chat.services.api_keys import api_key_create
from gptoss_web.devtools.stack import ROOT, Stack
from gptoss_web.devtools.tinymodel import WEATHER_ANSWER
from inference.models import UsageDay
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CODEX = ROOT / "node_modules" / ".bin" / "codex"


def _codex(live: Stack, home: Path, prompt: str) -> list[dict[str, object]]:
    """Run `codex exec --json` on *prompt*; return its JSONL events."""
    _, key = api_key_create(owner=UserFactory(username="alice"), name="codex")
    (home / "config.toml").write_text(
        'model = "tiny"\nmodel_provider = "gptoss"\n'
        "[model_providers.gptoss]\n"
        f'name = "gptoss-web"\nbase_url = "{live.base_url}/v1"\nenv_key = "GPTOSS_API_KEY"\n'
        'wire_api = "responses"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
    )
    work = home / "work"
    work.mkdir()
    done = subprocess.run(
        [str(CODEX), "exec", "--json", "--skip-git-repo-check", "-C", str(work), prompt],
        env={"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home), "GPTOSS_API_KEY": key},
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(not CODEX.exists(), reason="npm ci installs the Codex CLI (package.json)")
def test_codex_runs_a_tool_loop_to_the_end(live: Stack, tmp_path: Path) -> None:
    events = _codex(live, tmp_path, "What is the weather like?")
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    # The model's function script called get_weather; Codex (which has no such tool) answered the call with
    # its output, and the model's answer to that output is Codex's final message.
    answers = [item.get("text") for item in items if item.get("type") == "agent_message"]
    assert answers == [WEATHER_ANSWER], items
    assert not Conversation.objects.exists()  # store: false keeps nothing but the usage figures
    assert UsageDay.objects.get().source == UsageDay.Source.API
