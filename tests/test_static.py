"""Production static files: the browser's ES modules import each other by their hashed names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.core.management import call_command
from django.test import override_settings

from gptoss_web.settings import STORAGES as PRODUCTION_STORAGES

IMPORT = re.compile(r"""^(?:import|export)\b[^;]*?\bfrom\s*"(\.[^"]+)";""", re.MULTILINE)


def test_collected_modules_import_the_hashed_files_the_manifest_names(tmp_path: Path) -> None:
    """A browser loading the hashed app.js gets hashed (long-cached, never stale) modules all the way down."""
    # The storages of gptoss_web.settings as production runs them (DJANGO_DEBUG unset).
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=PRODUCTION_STORAGES):
        call_command("collectstatic", interactive=False, verbosity=0)
    hashed = set(json.loads((tmp_path / "staticfiles.json").read_text())["paths"].values())
    entry = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]["js/app.js"]
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        seen.add(name)
        for url in IMPORT.findall((tmp_path / name).read_text()):
            target = _normalise(Path(name).parent, url)
            assert target in hashed, f"{name} imports {url}, which is not a hashed file"
            if target not in seen:
                todo.append(target)
    assert any(name.startswith("js/chat/main.") for name in seen)  # the whole tree was followed


def _normalise(folder: Path, url: str) -> str:
    """Return the static path that the relative *url* imported from *folder* names."""
    parts = list(folder.parts)
    for part in url.split("/"):
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)
