"""Fetch, import and verify the official gpt-oss GGUF files (no Django: paths in, paths out).

Files are written as `<name>.part` next to their final name and renamed only after their sha256 matched the
hub's metadata, so a half-written or wrong file is never found under the name llama.cpp opens. A `.part`
left behind by a break is resumed with an HTTP Range request on the next run. Each verified file gets a
record in `.verified/<name>.json` (size, sha256, repository, commit) that `models list` reads.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers
from tqdm import tqdm

from inference.runtime.catalog import (
    DEFAULT_MODEL,
    HUB_MODELS,
    TINY,
    HubModel,
    ModelUnavailable,
    missing_advice,
    model_path,
    models_dir,
    served_model_name,
)

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
MANIFEST_NAME = "gptoss-manifest.json"
HASH_CHUNK = 8 * 1024 * 1024
# Room left on the disk beyond the files themselves (the database, logs and the vocabulary live there too).
DISK_MARGIN = 256 * 1024 * 1024

ProgressFactory = Callable[..., Any]  # a tqdm-like class: (total=, initial=, desc=, unit=, ...) -> bar


class DownloadError(Exception):
    """A download or import that cannot go on; the message says what happened and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class VerifiedRecord:
    filename: str
    size: int
    sha256: str
    repo_id: str
    revision: str
    source: str  # the endpoint it came from, or "import:<path>"
    verified_at: str


@dataclass(frozen=True)
class FileState:
    filename: str
    state: str  # "verified", "unverified", "partial", "missing"
    size: int
    expected_size: int | None


# --- Names --------------------------------------------------------------------------------------------------


def hub_model(name: str) -> HubModel:
    """Return the hub files of *name*, or raise with the list of names that exist."""
    hub = HUB_MODELS.get(name)
    if hub is None:
        known = ", ".join(HUB_MODELS)
        extra = " (the tiny model is generated, not downloaded)" if name == TINY else ""
        raise DownloadError(f"Unknown model {name!r}{extra}: use one of {known}.")
    return hub


def endpoint_from_env() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token_from_env() -> str | None:
    return os.environ.get("HF_TOKEN") or None


# --- Hub metadata -------------------------------------------------------------------------------------------


def remote_files(
    hub: HubModel, *, endpoint: str, token: str | None, revision: str = "main"
) -> tuple[str, list[RemoteFile]]:
    """Return the commit and the size and sha256 of each of *hub*'s files, as the hub's metadata states."""
    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        info = api.model_info(hub.repo_id, revision=revision, files_metadata=True)
    except Exception as error:
        raise _explain(error, endpoint=endpoint, what=f"the file list of {hub.repo_id}") from error
    by_name = {s.rfilename: s for s in info.siblings or []}
    files = []
    for filename in hub.files:
        sibling = by_name.get(filename)
        if sibling is None:
            raise DownloadError(
                f"{endpoint} lists no {filename} in {hub.repo_id}: if HF_ENDPOINT is a mirror, mirror that "
                "repository completely."
            )
        if sibling.lfs is None or not sibling.lfs.sha256:
            raise DownloadError(
                f"{endpoint} gives no sha256 for {hub.repo_id}/{filename}, so it cannot be verified: "
                "point HF_ENDPOINT at a Hub-compatible mirror that serves LFS metadata."
            )
        files.append(RemoteFile(filename, int(sibling.lfs.size), sibling.lfs.sha256.lower()))
    return info.sha or revision, files


def _explain(error: Exception, *, endpoint: str, what: str) -> DownloadError:
    """Turn a huggingface_hub or network error into one sentence of what happened and what to do."""
    if isinstance(error, DownloadError):
        return error
    status = None
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
    if status in (401, 403):
        return DownloadError(
            f"{endpoint} refused access to {what} (HTTP {status}): check HF_TOKEN, or unset it "
            "(the ggml-org gpt-oss repositories are public)."
        )
    if (
        isinstance(error, RepositoryNotFoundError | RevisionNotFoundError | EntryNotFoundError)
        or status == 404
    ):
        return DownloadError(
            f"{endpoint} does not have {what} (HTTP 404): if HF_ENDPOINT is a mirror, check that it mirrors "
            "the ggml-org GGUF repositories."
        )
    if status is not None and status >= 500:
        return DownloadError(
            f"{endpoint} failed while sending {what} (HTTP {status}): try again later; "
            "the download resumes where it stopped."
        )
    if status is not None:
        return DownloadError(f"{endpoint} answered HTTP {status} for {what}: {error}")
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return DownloadError(
            f"The disk filled up while writing {what}: free some space (or set GPTOSS_VAR_DIR to a larger "
            "disk) and run the command again; it resumes where it stopped."
        )
    if isinstance(error, OSError) and not isinstance(error, ConnectionError):
        return DownloadError(f"Downloading {what} failed ({error}): run the command again to resume.")
    if isinstance(error, httpx2.HTTPError | ConnectionError):
        return DownloadError(
            f"Cannot reach {endpoint} for {what} ({error}): check the network or set HF_ENDPOINT to an "
            "internal mirror; on a server without network use `models download NAME --from-file PATH`."
        )
    return DownloadError(f"Fetching {what} from {endpoint} failed: {error}")


# --- Files on disk ------------------------------------------------------------------------------------------


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _record_path(directory: Path, filename: str) -> Path:
    return directory / ".verified" / f"{filename}.json"


def read_record(directory: Path, filename: str) -> VerifiedRecord | None:
    try:
        data = json.loads(_record_path(directory, filename).read_text())
        return VerifiedRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_record(directory: Path, record: VerifiedRecord) -> None:
    path = _record_path(directory, record.filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(path)


def sha256_file(path: Path, *, progress: ProgressFactory | None = None, desc: str = "") -> str:
    """Return the sha256 of *path*, showing progress when a bar class is given."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    bar = (
        progress(total=size, desc=desc or f"verifying {path.name}", unit="B", unit_scale=True)
        if progress
        else None
    )
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return digest.hexdigest()


def _check_disk(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed + DISK_MARGIN:
        raise DownloadError(
            f"Not enough disk space in {directory}: the model needs {_gib(needed)} more, {_gib(free)} "
            "is free. Free some space, or set GPTOSS_VAR_DIR to a larger disk, then run the command again."
        )


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def file_states(name: str, var_dir: Path) -> list[FileState]:
    """Return what is on disk for each file of *name*, using the verification records (no hashing)."""
    directory = models_dir(var_dir)
    states = []
    for filename in hub_model(name).files:
        target = directory / filename
        record = read_record(directory, filename)
        expected = record.size if record else None
        if target.is_file():
            size = target.stat().st_size
            state = "verified" if record is not None and record.size == size else "unverified"
            states.append(FileState(filename, state, size, expected))
        elif part_path(target).is_file():
            states.append(FileState(filename, "partial", part_path(target).stat().st_size, expected))
        else:
            states.append(FileState(filename, "missing", 0, expected))
    return states


# --- Download -----------------------------------------------------------------------------------------------


def download_model(
    name: str,
    var_dir: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    revision: str = "main",
    progress: ProgressFactory | None = None,
) -> list[Path]:
    """Download every file of *name* into var/models, resuming `.part` files; return the verified paths."""
    hub = hub_model(name)
    endpoint = (endpoint or endpoint_from_env()).rstrip("/")
    token = token if token is not None else token_from_env()
    directory = models_dir(var_dir)
    directory.mkdir(parents=True, exist_ok=True)
    commit, files = remote_files(hub, endpoint=endpoint, token=token, revision=revision)
    todo = [f for f in files if not _already_verified(directory, f)]
    needed = sum(f.size - _part_size(directory / f.filename, f) for f in todo)
    _check_disk(directory, needed)
    for remote in files:
        if remote in todo:
            _download_file(
                hub, remote, directory, commit=commit, endpoint=endpoint, token=token, progress=progress
            )
        else:
            logger.info("%s is already downloaded and verified", remote.filename)
    return [directory / f.filename for f in files]


def _already_verified(directory: Path, remote: RemoteFile) -> bool:
    target = directory / remote.filename
    record = read_record(directory, remote.filename)
    return (
        target.is_file()
        and record is not None
        and record.sha256 == remote.sha256
        and target.stat().st_size == remote.size
    )


def _part_size(target: Path, remote: RemoteFile) -> int:
    """Return how much of *remote* a `.part` already holds (0 when it belongs to another version)."""
    part = part_path(target)
    marker = part.with_name(part.name + ".sha256")
    if not part.is_file():
        return 0
    if (
        not marker.is_file()
        or marker.read_text().strip() != remote.sha256
        or part.stat().st_size > remote.size
    ):
        part.unlink()
        marker.unlink(missing_ok=True)
        return 0
    return part.stat().st_size


def _download_file(
    hub: HubModel,
    remote: RemoteFile,
    directory: Path,
    *,
    commit: str,
    endpoint: str,
    token: str | None,
    progress: ProgressFactory | None,
) -> None:
    target = directory / remote.filename
    part = part_path(target)
    resume = _part_size(target, remote)
    part.with_name(part.name + ".sha256").write_text(remote.sha256)
    url = hf_hub_url(hub.repo_id, remote.filename, revision=commit, endpoint=endpoint)
    what = f"{hub.repo_id}/{remote.filename}"
    try:
        metadata = get_hf_file_metadata(url, token=token or False, endpoint=endpoint)
        if metadata.size is not None and metadata.size != remote.size:
            raise DownloadError(
                f"{endpoint} serves {remote.filename} with {metadata.size:,} bytes, but the hub's metadata "
                f"says {remote.size:,}: the mirror holds a different file. Refresh the mirror (HF_ENDPOINT)."
            )
        headers = build_hf_headers(token=token or False)
        logger.info("downloading %s from %s (%d bytes already here)", what, endpoint, resume)
        with part.open("ab") as file:
            http_get(
                metadata.location,
                file,
                resume_size=resume,
                headers=headers,
                expected_size=remote.size,
                displayed_filename=remote.filename,
                tqdm_class=progress,  # type: ignore[arg-type]
            )
    except Exception as error:
        raise _explain(error, endpoint=endpoint, what=what) from error
    _verify_and_install(
        part, target, remote, repo_id=hub.repo_id, revision=commit, source=endpoint, progress=progress
    )


def _verify_and_install(
    source_file: Path,
    target: Path,
    remote: RemoteFile,
    *,
    repo_id: str,
    revision: str,
    source: str,
    progress: ProgressFactory | None,
    move: bool = True,
) -> None:
    """Give *source_file* its final name only if its size and sha256 match *remote*; else remove it."""
    size = source_file.stat().st_size
    actual = sha256_file(source_file, progress=progress) if size == remote.size else ""
    if actual != remote.sha256:
        if move:
            source_file.unlink()
            part_path(target).with_name(part_path(target).name + ".sha256").unlink(missing_ok=True)
        got = f"sha256 {actual}" if actual else f"{size:,} bytes"
        raise DownloadError(
            f"{remote.filename} from {source} is not the published file ({got}; expected sha256 "
            f"{remote.sha256}, {remote.size:,} bytes). It was not installed"
            + (" and was deleted" if move else "")
            + ". If HF_ENDPOINT is a mirror, it serves a different file: refresh the mirror and run again."
        )
    if move:
        source_file.replace(target)
        part_path(target).with_name(part_path(target).name + ".sha256").unlink(missing_ok=True)
    else:
        tmp = part_path(target)
        shutil.copyfile(source_file, tmp)
        tmp.replace(target)
    record = VerifiedRecord(
        filename=remote.filename,
        size=remote.size,
        sha256=remote.sha256,
        repo_id=repo_id,
        revision=revision,
        source=source,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _write_record(target.parent, record)
    logger.info("%s verified (sha256 %s)", target, remote.sha256)


# --- Air-gapped import


def manifest_write(
    name: str, var_dir: Path, *, endpoint: str | None = None, token: str | None = None
) -> Path:
    """Write the hub's sizes and sha256s of *name* beside its files, to carry along to an offline server."""
    hub = hub_model(name)
    endpoint = (endpoint or endpoint_from_env()).rstrip("/")
    commit, files = remote_files(
        hub, endpoint=endpoint, token=token if token is not None else token_from_env()
    )
    directory = models_dir(var_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST_NAME
    data = _read_manifest(path) if path.is_file() else {}
    data[name] = {"repo_id": hub.repo_id, "revision": commit, "files": [asdict(f) for f in files]}
    path.write_text(json.dumps(data, indent=1))
    return path


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DownloadError(f"{path} is not a readable gptoss-web manifest: {error}") from error
    if not isinstance(data, dict):
        raise DownloadError(f"{path} is not a gptoss-web manifest.")
    return data


def import_model(
    name: str,
    var_dir: Path,
    sources: Iterable[Path],
    *,
    endpoint: str | None = None,
    token: str | None = None,
    offline: bool = False,
    progress: ProgressFactory | None = None,
) -> list[Path]:
    """Copy the files of *name* found in *sources* (files or folders) into var/models, verified.

    The expected sha256s come from a `gptoss-manifest.json` beside the files (written by `models manifest` on
    a connected machine) or, when there is none, from the hub (HF_ENDPOINT).
    """
    hub = hub_model(name)
    found: dict[str, Path] = {}
    manifests: list[Path] = []
    for source in sources:
        source = source.expanduser()
        if source.is_dir():
            candidates = [source / f for f in hub.files]
            manifests.append(source / MANIFEST_NAME)
        elif source.is_file():
            candidates = [source]
            manifests.append(source.parent / MANIFEST_NAME)
        else:
            raise DownloadError(f"{source} does not exist.")
        for candidate in candidates:
            if candidate.is_file() and candidate.name in hub.files:
                found.setdefault(candidate.name, candidate)
    missing = [f for f in hub.files if f not in found]
    if missing:
        raise DownloadError(
            f"{', '.join(missing)} not found in {', '.join(str(s) for s in sources)}: bring every file "
            f"of {name} ({', '.join(hub.files)})."
        )
    revision, files = _expected_for_import(
        name, hub, manifests, endpoint=endpoint, token=token, offline=offline
    )
    directory = models_dir(var_dir)
    directory.mkdir(parents=True, exist_ok=True)
    _check_disk(directory, sum(f.size for f in files if not _already_verified(directory, f)))
    for remote in files:
        if _already_verified(directory, remote):
            continue
        source_file = found[remote.filename]
        _verify_and_install(
            source_file,
            directory / remote.filename,
            remote,
            repo_id=hub.repo_id,
            revision=revision,
            source=f"import:{source_file}",
            progress=progress,
            move=False,
        )
    return [directory / f for f in hub.files]


def _expected_for_import(
    name: str,
    hub: HubModel,
    manifests: list[Path],
    *,
    endpoint: str | None,
    token: str | None,
    offline: bool,
) -> tuple[str, list[RemoteFile]]:
    for manifest in manifests:
        if manifest.is_file():
            entry = _read_manifest(manifest).get(name)
            if entry is not None:
                try:
                    return entry["revision"], [RemoteFile(**f) for f in entry["files"]]
                except (KeyError, TypeError) as error:
                    raise DownloadError(f"{manifest} has a malformed entry for {name}: {error}") from error
    if offline:
        raise DownloadError(
            f"No {MANIFEST_NAME} for {name} beside the files, and --offline forbids asking the hub: on a "
            f"connected machine run `python manage.py models manifest {name}` and copy the manifest along."
        )
    endpoint = (endpoint or endpoint_from_env()).rstrip("/")
    return remote_files(hub, endpoint=endpoint, token=token if token is not None else token_from_env())


def hub_reachable(timeout: float = 5.0) -> bool:
    """Return whether the model hub (or the HF_ENDPOINT mirror) answers at all."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(f"{endpoint}/api/models?limit=1", timeout=timeout)  # noqa: S310
    except OSError:
        return False
    return True


def download_for_run(name: str, var_dir: Path) -> Path:
    """Download *name*'s GGUF files into var/models: progress bars, resume, sha256 check."""
    try:
        return download_model(name, var_dir, progress=tqdm)[0]
    except DownloadError as error:
        raise ModelUnavailable(
            f"{error}\n" + missing_advice(name, var_dir, list(HUB_MODELS[name].files))
        ) from None


def resolve_model_for_run(env: Mapping[str, str]) -> str:
    """Make sure the model that `make run` serves is present (building or downloading it); return the name
    it is served under (`served_model_name`)."""
    var_dir = Path(env.get("GPTOSS_VAR_DIR", "var"))
    name = env.get("GPTOSS_MODEL", "").strip() or DEFAULT_MODEL
    explicit = env.get("GPTOSS_MODEL_PATH", "")
    try:
        model_path(name, var_dir, explicit_path=explicit)
    except ModelUnavailable:
        if explicit or name not in HUB_MODELS:
            raise
        if not hub_reachable():
            raise ModelUnavailable(
                missing_advice(name, var_dir, list(HUB_MODELS[name].files))
                + "\n  (huggingface.co is not reachable.)"
            ) from None
        logger.info("downloading %s", name)
        download_for_run(name, var_dir)
    return served_model_name(env)
