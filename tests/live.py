"""The live stack of the browser tests: gptoss_web.devtools.stack.Stack on the pytest-django test database.

`live_stack()` starts Daphne, a Celery GPU worker on the tiny model and the reaper against the test database
and the test run's Redis prefix (on the machine's Redis), with the static files collected into a folder
that whitenoise serves, and stops them all on leaving, also when the test fails::

    with live_stack() as stack:
        stack.base_url                # http://127.0.0.1:<port>
        stack.kill("worker")          # SIGKILL one process, as a crash would
        stack.start_process("worker") # and start it again
        stack.output("worker")        # everything it printed so far
"""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from django.db.models import Q

from gptoss_web.devtools.stack import ROOT, Stack


def test_database_url() -> str:
    """Return the URL of the pytest-django test database, for child processes."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test, wherever imported


def collect_static(target: Path) -> Path:
    """Copy the static files into *target*, which Daphne's whitenoise then serves as STATIC_ROOT."""
    from django.conf import settings

    env = Stack(database_url=test_database_url(), redis_prefix=settings.GPTOSS_REDIS_PREFIX).env
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT, env={**env, "DJANGO_STATIC_ROOT": str(target)}, check=True,
    )  # fmt: skip
    return target


@contextmanager
def live_stack(
    *, static_root: Path | None = None, worker_env: Mapping[str, str] | None = None
) -> Iterator[Stack]:
    """Run the stack until the block ends; *static_root* is a folder `collect_static` filled."""
    from django.conf import settings

    tmp = None
    if static_root is None:
        tmp = Path(tempfile.mkdtemp(prefix="gptoss-static-"))
        static_root = collect_static(tmp)
    worker_env = dict(worker_env or {})
    # The model's budget, which the web process checks requests against too (one environment, as deployed).
    shared = ("GPTOSS_CONTEXT", "GPTOSS_MAX_ANSWER_TOKENS")
    budget = {name: worker_env[name] for name in shared if name in worker_env}
    stack = Stack(
        database_url=test_database_url(),
        redis_prefix=settings.GPTOSS_REDIS_PREFIX,
        redis_url=settings.REDIS_URL,
        worker_env=worker_env,
        DJANGO_STATIC_ROOT=str(static_root),
        GPTOSS_VAR_DIR=str(settings.GPTOSS_VAR_DIR),
        **{"GPTOSS_CONTEXT": "2048", **budget},
    )
    try:
        yield stack.start()
    finally:
        stack.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def live_web(**env: str) -> Iterator[Stack]:
    """Run only the stack's Daphne (make run's command line, *env* added) on the test database."""
    from django.conf import settings

    stack = Stack(
        database_url=test_database_url(),
        redis_prefix=settings.GPTOSS_REDIS_PREFIX,
        redis_url=settings.REDIS_URL,
        **env,
    )
    try:
        stack.start_process("web")
        yield stack
    finally:
        stack.stop()


def sign_in(
    base_url: str, username: str, password: str, *, headers: Mapping[str, str] = {}, source: str = "127.0.0.1"
) -> tuple[int, str]:
    """Sign in through the login form as a browser would, from the address *source*, adding *headers*.

    Return the answer's status and text (a 302 when the password was taken).
    """
    url = urlsplit(base_url)
    assert url.hostname and url.port
    connection = (
        http.client.HTTPSConnection(
            url.hostname, url.port, source_address=(source, 0), timeout=60,
            context=ssl._create_unverified_context(),  # noqa: S323  (a throw-away test certificate)
        )
        if url.scheme == "https"
        else http.client.HTTPConnection(url.hostname, url.port, source_address=(source, 0), timeout=60)
    )  # fmt: skip
    try:
        connection.request("GET", "/accounts/login/", headers=dict(headers))
        response = connection.getresponse()
        page = response.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert response.status == 200 and token, page
        cookies: SimpleCookie = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        form = urlencode({"csrfmiddlewaretoken": token.group(1), "username": username, "password": password})
        connection.request(
            "POST", "/accounts/login/", body=form,
            headers={
                **headers,
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={cookies['csrftoken'].value}",
                "Referer": f"{base_url}/accounts/login/",
            },
        )  # fmt: skip
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def settle_replies() -> None:
    """Stop what a test left generating and wait for the worker's last writes, so the next test starts with
    free GPU slots and the database can be emptied (a flush racing the worker's final write deadlocks)."""
    from chat.models import Conversation, Message
    from chat.services.replies import reply_cancel

    for conversation in Conversation.objects.filter(messages__status__in=Message.IN_FLIGHT).distinct():
        reply_cancel(conversation=conversation)
    deadline = time.monotonic() + 15
    # A stopped reply's tokens stay reserved until the worker has stored its end and recorded its usage.
    unsettled = Q(status__in=Message.IN_FLIGHT) | Q(reserved_tokens__gt=0)
    while Message.objects.filter(unsettled).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # the usage write after the reply's own
