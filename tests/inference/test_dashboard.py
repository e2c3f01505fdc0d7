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
from django.test import Client

from gptoss_web.stack import wait_until
from inference.dispatch import queue_for_model
from inference.models import ServedModel
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="ops", is_staff=True))
    return client


def test_healthz_reports_each_part_and_needs_no_login(client: Client) -> None:
    # Other tests may leave a live `tiny` worker in this process: check models that nobody serves.
    ServedModel.objects.create(name="tiny", source="tiny", enabled=False)  # disabled: needs no worker
    ServedModel.objects.create(name="big", source="gpt-oss-120b", queue="gpu.h200")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "fail",
        "checks": {"database": "ok", "redis": "ok", "model:big": "no ready worker (0 up) on queue gpu.h200"},
    }
    web = client.get("/healthz?scope=web")
    assert (web.status_code, web.json()["status"]) == (200, "ok")


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
