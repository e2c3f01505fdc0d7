"""`manage.py models download|list|manifest`: get the official gpt-oss GGUF files and see what is here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from inference.runtime import download
from inference.runtime.catalog import HUB_MODELS, models_dir

STATE_LABELS = {
    "verified": "verified",
    "unverified": "present, NOT verified (run `models download` or `--from-file` to check it)",
    "partial": "partial download (run `models download` again to resume)",
    "missing": "missing",
}


def _progress_class() -> Any:
    return tqdm


class Command(BaseCommand):
    help = "Download (or import from a file or folder) and verify gpt-oss models; list what is present."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        get = sub.add_parser("download", help="download NAME from the hub (HF_ENDPOINT, HF_TOKEN), verified")
        get.add_argument("name", help=", ".join(HUB_MODELS))
        get.add_argument(
            "--from-file",
            action="append",
            type=Path,
            metavar="PATH",
            help="import files carried in by hand (a file or a folder; repeatable) instead of downloading",
        )
        get.add_argument(
            "--offline", action="store_true", help="with --from-file: never ask the hub, need the manifest"
        )
        get.add_argument("--revision", default="main", help="hub revision (default main)")
        sub.add_parser("list", help="show which model files are present and verified")
        manifest = sub.add_parser(
            "manifest", help="write the hub's sha256s of NAME to var/models/gptoss-manifest.json"
        )
        manifest.add_argument("name", help=", ".join(HUB_MODELS))

    def handle(self, *args: Any, **options: Any) -> None:
        var_dir = Path(settings.GPTOSS_VAR_DIR)
        try:
            if options["action"] == "download":
                self._download(var_dir, options)
            elif options["action"] == "manifest":
                path = download.manifest_write(options["name"], var_dir)
                self.stdout.write(f"Wrote {path}: copy it with the model files to the offline server.")
            else:
                self._list(var_dir)
        except download.DownloadError as error:
            raise CommandError(str(error)) from None
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted: the partial file is kept; run the same command again to resume."
            ) from None

    def _download(self, var_dir: Path, options: dict[str, Any]) -> None:
        name = options["name"]
        if options["from_file"]:
            paths = download.import_model(
                name, var_dir, options["from_file"], offline=options["offline"], progress=_progress_class()
            )
        else:
            paths = download.download_model(
                name, var_dir, revision=options["revision"], progress=_progress_class()
            )
        self.stdout.write(self.style.SUCCESS(f"{name} is ready and verified: {paths[0]}"))

    def _list(self, var_dir: Path) -> None:
        self.stdout.write(f"Models in {models_dir(var_dir)}:")
        for name in HUB_MODELS:
            states = download.file_states(name, var_dir)
            overall = (
                "verified"
                if all(s.state == "verified" for s in states)
                else "missing"
                if all(s.state == "missing" for s in states)
                else "incomplete"
            )
            self.stdout.write(f"{name}: {overall}")
            for state in states:
                size = f"{state.size / 1024**3:.2f} GiB" if state.size else ""
                self.stdout.write(f"  {state.filename}  {STATE_LABELS[state.state]}  {size}".rstrip())
