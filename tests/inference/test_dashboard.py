"""The staff dashboard of GPU workers and /healthz, with a real Celery GPU worker started and killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client, override_settings

from gptoss_web.devtools.stack import wait_until
from gptoss_web.env import parse_networks
from inference.models import ServedModel
from inference.runtime.catalog import queue_for_model
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="ops", is_staff=True))
    return client


HEALTHZ_TOKEN = "monitoring-token-0123456789-abcdefghij"
DETAILS = {
    "status": "fail",
    "checks": {"database": "ok", "redis": "ok", "model:big": "no ready worker (0 up) on queue gpu.h200"},
}


@pytest.fixture
def failing_model() -> None:
    # Other tests may leave a live `tiny` worker in this process: check models that nobody serves.
    ServedModel.objects.create(name="tiny", source="tiny", enabled=False)  # disabled: needs no worker
    ServedModel.objects.create(name="big", source="gpt-oss-120b", queue="gpu.h200")


def test_healthz_tells_anonymous_callers_the_status_alone(client: Client, failing_model: None) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (503, {"status": "fail"})
    assert "big" not in response.content.decode() and "gpu.h200" not in response.content.decode()
    web = client.get("/healthz?scope=web")
    assert (web.status_code, web.json()) == (200, {"status": "ok"})
    # Monitors that probe with HEAD get the same status code, and no body.
    assert (client.head("/healthz").status_code, client.head("/healthz").content) == (503, b"")
    # A signed-in user who is not staff is no monitor either.
    alice = Client()
    alice.force_login(UserFactory(username="alice"))
    assert alice.get("/healthz").json() == {"status": "fail"}


def test_healthz_names_each_check_to_staff(staff_client: Client, failing_model: None) -> None:
    response = staff_client.get("/healthz")
    assert (response.status_code, response.json()) == (503, DETAILS)
    web = staff_client.get("/healthz?scope=web")
    assert (web.status_code, web.json()) == (
        200,
        {"status": "ok", "checks": {"database": "ok", "redis": "ok"}},
    )


@override_settings(GPTOSS_HEALTHZ_TOKEN=HEALTHZ_TOKEN)
def test_healthz_names_each_check_to_a_bearer_of_the_monitoring_token(
    client: Client, failing_model: None
) -> None:
    good = client.get("/healthz", headers={"Authorization": f"Bearer {HEALTHZ_TOKEN}"})
    assert (good.status_code, good.json()) == (503, DETAILS)
    for wrong in (
        f"Bearer {HEALTHZ_TOKEN[:-1]}",
        f"Bearer {HEALTHZ_TOKEN}x",
        "Bearer ",
        HEALTHZ_TOKEN,
        f"Basic {HEALTHZ_TOKEN}",
    ):
        refused = client.get("/healthz", headers={"Authorization": wrong})
        assert (refused.status_code, refused.json()) == (503, {"status": "fail"}), wrong


@override_settings(
    GPTOSS_HEALTHZ_NETWORKS=parse_networks("GPTOSS_HEALTHZ_NETWORKS", ["10.0.0.0/8", "fd00::/8"])
)
def test_healthz_names_each_check_to_the_monitoring_networks(client: Client, failing_model: None) -> None:
    for inside in ("10.1.2.3", "fd00::5", "::ffff:10.9.9.9"):
        assert client.get("/healthz", REMOTE_ADDR=inside).json() == DETAILS, inside
    for outside in ("192.168.1.5", "127.0.0.1", "fe80::1", ""):
        assert client.get("/healthz", REMOTE_ADDR=outside).json() == {"status": "fail"}, outside


def test_the_dashboard_is_for_staff_only(alice_client: Client, staff_client: Client) -> None:
    assert alice_client.get("/ops/workers/").status_code == 302
    assert alice_client.get("/ops/workers.json").status_code == 302
    page = staff_client.get("/ops/workers/")
    assert page.status_code == 200 and "<h1>GPU workers</h1>" in page.content.decode()
    assert 'href="/ops/workers/"' in staff_client.get("/admin/").content.decode()  # linked from admin


@pytest.mark.slow
def test_the_dashboard_shows_a_live_worker_and_shows_it_down_once_killed(staff_client: Client) -> None:
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "GPTOSS_REDIS_PREFIX": django_settings.GPTOSS_REDIS_PREFIX,
        "GPTOSS_MODEL": "dash-tiny",
        "GPTOSS_SLOTS": "2",
    }
    # Its own model (settings from the registry), so workers other tests left in this process do not count.
    ServedModel.objects.create(name="dash-tiny", source="tiny", context=2048, slots=2)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads",
         "--concurrency", "2", "--queues", queue_for_model("dash-tiny"), "--without-gossip",
         "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def ready() -> dict[str, Any] | None:
            workers = staff_client.get("/ops/workers.json").json()["workers"]
            return next((w for w in workers if w["name"].endswith(f":{worker.pid}") and w["up"]), None)

        wait_until(lambda: (ready() or {}).get("state") == "ready", 120, "the worker's ready heartbeat")
        live = ready()
        assert live is not None
        assert live["model"] == "dash-tiny" and live["slots_total"] == 2 and live["slots_busy"] == 0
        assert 0 < live["ram_used"] < live["ram_total"]
        assert live["gpu"] is None  # no GPU on this machine: NVML absent or without devices
        page = staff_client.get("/ops/workers/").content.decode()
        assert live["name"] in page and "ready" in page and "0 / 2" in page
        health = staff_client.get("/healthz")
        assert (health.status_code, health.json()["checks"]["model:dash-tiny"]) == (200, "ok")

        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

        def down() -> bool:
            workers = staff_client.get("/ops/workers.json").json()["workers"]
            return any(w["name"] == live["name"] and not w["up"] for w in workers)

        started = time.monotonic()
        wait_until(down, 30, "the killed worker to be shown down")
        shown_down_after = time.monotonic() - started
        print(f"killed worker shown down after {shown_down_after:.1f} s")
        assert shown_down_after < 15
        page = staff_client.get("/ops/workers/").content.decode()
        assert 'class="is-down"' in page and ">down<" in page.replace(" ", "")
        assert staff_client.get("/healthz").status_code == 503
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
