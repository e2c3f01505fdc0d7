"""Model downloads through huggingface_hub against a fake hub served on loopback, and air-gapped imports."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.runtime import download
from inference.runtime.catalog import HUB_MODELS
from tests.inference.fakehub import COMMIT, HubState, fake_hub

ROOT = Path(__file__).resolve().parents[2]
REPO_20B = HUB_MODELS["gpt-oss-20b"].repo_id
REPO_120B = HUB_MODELS["gpt-oss-120b"].repo_id
FILE_20B = HUB_MODELS["gpt-oss-20b"].files[0]
MIB = 1024 * 1024


def _blob(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class Recorder:
    """A tqdm-like bar class that remembers every bar's final position and total."""

    bars: list[Recorder] = []

    def __init__(self, total: int | None = None, initial: int = 0, **_: Any) -> None:
        self.total, self.n = total, initial
        Recorder.bars.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[tuple[HubState, str]]:
    state = HubState(
        repos={
            REPO_20B: {FILE_20B: _blob("20b", 300_000)},
            REPO_120B: {
                name: _blob(name, 120_000 + i) for i, name in enumerate(HUB_MODELS["gpt-oss-120b"].files)
            },
        }
    )
    Recorder.bars = []
    with fake_hub(state) as endpoint:
        yield state, endpoint


def test_download_reaches_100_percent_and_is_verified(hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, endpoint = hub
    [path] = download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint, progress=Recorder)
    data = state.repos[REPO_20B][FILE_20B]
    assert path.read_bytes() == data
    downloads = [bar for bar in Recorder.bars if bar.total == len(data)]
    assert downloads and all(bar.n == bar.total for bar in downloads)  # download and verification bars: 100 %
    [file_state] = download.file_states("gpt-oss-20b", tmp_path)
    assert file_state.state == "verified"
    record = download.read_record(path.parent, FILE_20B)
    assert (
        record is not None and record.revision == COMMIT and record.sha256 == hashlib.sha256(data).hexdigest()
    )
    # A second run asks the hub for the list only: nothing is downloaded again.
    state.requests.clear()
    download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint, progress=Recorder)
    assert [r for r in state.requests if "/resolve/" in r[1]] == []


def test_a_partial_file_from_an_earlier_run_is_resumed_with_a_range_request(
    hub: tuple[HubState, str], tmp_path: Path
) -> None:
    state, endpoint = hub
    data = state.repos[REPO_20B][FILE_20B]
    models = tmp_path / "models"
    models.mkdir()
    part = models / f"{FILE_20B}.part"
    part.write_bytes(data[:100_000])
    (models / f"{FILE_20B}.part.sha256").write_text(hashlib.sha256(data).hexdigest())
    [path] = download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint, progress=Recorder)
    assert path.read_bytes() == data
    gets = [r for r in state.requests if r[0] == "GET" and "/resolve/" in r[1]]
    assert [r[2] for r in gets] == ["bytes=100000-"]
    assert not part.exists()


def test_a_connection_cut_mid_file_resumes_where_it_stopped(
    hub: tuple[HubState, str], tmp_path: Path
) -> None:
    state, endpoint = hub
    # huggingface_hub writes in 10 MiB chunks: a cut after 11 MiB resumes from 10 MiB, not from zero.
    state.repos[REPO_20B][FILE_20B] = _blob("big", 12 * MIB)
    state.cut_after, state.cuts_left = 11 * MIB, 1
    [path] = download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint, progress=Recorder)
    assert path.read_bytes() == state.repos[REPO_20B][FILE_20B]
    ranges = [r[2] for r in state.requests if r[0] == "GET" and "/resolve/" in r[1]]
    assert ranges == [None, f"bytes={10 * MIB}-"]


def test_a_mirror_serving_other_bytes_is_detected_and_nothing_is_installed(
    hub: tuple[HubState, str], tmp_path: Path
) -> None:
    state, endpoint = hub
    data = state.repos[REPO_20B][FILE_20B]
    state.served_instead[FILE_20B] = data[:-1] + b"\x00"
    with pytest.raises(download.DownloadError, match=r"not the published file.*mirror"):
        download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint)
    models = tmp_path / "models"
    assert not (models / FILE_20B).exists()
    assert not (models / f"{FILE_20B}.part").exists()
    assert download.file_states("gpt-oss-20b", tmp_path)[0].state == "missing"


def test_the_120b_three_shard_set_is_downloaded_and_listed(hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, endpoint = hub
    paths = download.download_model("gpt-oss-120b", tmp_path, endpoint=endpoint, progress=Recorder)
    assert [p.name for p in paths] == list(HUB_MODELS["gpt-oss-120b"].files)
    for path in paths:
        assert path.read_bytes() == state.repos[REPO_120B][path.name]
    assert [s.state for s in download.file_states("gpt-oss-120b", tmp_path)] == ["verified"] * 3


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "does not have .*HTTP 404.*mirror"), (500, "HTTP 500.*try again later")],
)
def test_hub_errors_stop_with_advice(
    hub: tuple[HubState, str], tmp_path: Path, status: int, message: str
) -> None:
    state, endpoint = hub
    state.status = status
    with pytest.raises(download.DownloadError, match=message):
        download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint)
    assert not (tmp_path / "models" / FILE_20B).exists()


def test_a_wrong_token_is_named(hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, endpoint = hub
    state.token = "right-token"
    with pytest.raises(download.DownloadError, match=r"HTTP 401.*HF_TOKEN"):
        download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint, token="wrong-token")
    [path] = download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint, token="right-token")
    assert path.is_file()


def test_unknown_names_and_unreachable_hubs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        download.DownloadError, match=r"Unknown model 'gpt-oss-7b'.*gpt-oss-20b, gpt-oss-120b"
    ):
        download.download_model("gpt-oss-7b", tmp_path)
    with pytest.raises(download.DownloadError, match=r"Cannot reach .*--from-file"):
        download.download_model("gpt-oss-20b", tmp_path, endpoint="http://127.0.0.1:9")


def test_not_enough_disk_space_stops_before_downloading(
    hub: tuple[HubState, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, endpoint = hub
    monkeypatch.setattr(download, "DISK_MARGIN", 1 << 60)  # more than any disk holds
    with pytest.raises(download.DownloadError, match=r"Not enough disk space.*GPTOSS_VAR_DIR"):
        download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint)
    assert [r for r in state.requests if "/resolve/" in r[1]] == []


def test_air_gapped_import_checks_the_manifest(hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, endpoint = hub
    carried = tmp_path / "usb"
    download.manifest_write("gpt-oss-120b", carried, endpoint=endpoint)  # on the connected machine
    for name, data in state.repos[REPO_120B].items():
        (carried / "models" / name).write_bytes(data)
    server = tmp_path / "server"
    paths = download.import_model(
        "gpt-oss-120b", server, [carried / "models"], offline=True, progress=Recorder
    )
    assert [s.state for s in download.file_states("gpt-oss-120b", server)] == ["verified"] * 3
    assert paths[0].read_bytes() == state.repos[REPO_120B][paths[0].name]
    # A damaged copy is refused and never installed.
    other = tmp_path / "other"
    shard = carried / "models" / HUB_MODELS["gpt-oss-120b"].files[1]
    shard.write_bytes(b"\x00" + shard.read_bytes()[1:])
    with pytest.raises(download.DownloadError, match=r"not the published file"):
        download.import_model("gpt-oss-120b", other, [carried / "models"], offline=True)
    assert not (other / "models" / shard.name).exists()
    manifest = json.loads((carried / "models" / download.MANIFEST_NAME).read_text())
    assert manifest["gpt-oss-120b"]["revision"] == COMMIT


def test_import_without_a_manifest_offline_says_how_to_get_one(tmp_path: Path) -> None:
    (tmp_path / FILE_20B).write_bytes(b"gguf")
    with pytest.raises(download.DownloadError, match=r"models manifest gpt-oss-20b"):
        download.import_model("gpt-oss-20b", tmp_path / "server", [tmp_path / FILE_20B], offline=True)


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_shows_progress_and_lists_what_is_verified(
    hub: tuple[HubState, str], tmp_path: Path
) -> None:
    _, endpoint = hub
    env = {"HF_ENDPOINT": endpoint, "GPTOSS_VAR_DIR": str(tmp_path), "HF_HUB_DISABLE_PROGRESS_BARS": ""}
    done = _manage("models", "download", "gpt-oss-20b", env=env)
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "ready and verified" in done.stdout
    listed = _manage("models", "list", env=env)
    assert "gpt-oss-20b: verified" in listed.stdout and "gpt-oss-120b: missing" in listed.stdout
    unknown = _manage("models", "download", "llama-3", env=env)
    assert unknown.returncode == 1 and "Unknown model 'llama-3'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_a_full_disk_mid_download_keeps_the_part_and_says_so(
    hub: tuple[HubState, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    _, endpoint = hub

    def no_space(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "http_get", no_space)  # huggingface_hub's, as the download module calls it
    with pytest.raises(download.DownloadError, match=r"disk filled up.*resumes"):
        download.download_model("gpt-oss-20b", tmp_path, endpoint=endpoint)
    assert not (tmp_path / "models" / FILE_20B).exists()


def test_list_tells_partial_and_hand_placed_files_from_verified_ones(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / FILE_20B).write_bytes(b"copied by hand, never checked")
    second = HUB_MODELS["gpt-oss-120b"].files[1]
    (models / f"{second}.part").write_bytes(b"half")
    assert [s.state for s in download.file_states("gpt-oss-20b", tmp_path)] == ["unverified"]
    assert [s.state for s in download.file_states("gpt-oss-120b", tmp_path)] == [
        "missing",
        "partial",
        "missing",
    ]
