"""Web processes never load llama.cpp (nor the GPU worker's code, nor the engine over llama.cpp).

The test process itself has llama_cpp loaded by other tests, so each check runs in a fresh interpreter:

- `python -m tests.test_web_loads_no_llama_cpp` (the probe below) sets Django up on the test database, imports
  the ASGI application and the URLconf, saves one object of every admin-registered model through its admin
  form (ServedModel's `clean` among them: it used to load llama.cpp) and `full_clean()` + `save()` of every
  model of the apps chat, inference and tools, GETs every URL pattern whose arguments it can fill (the
  admin's changelist, add, change, history and delete pages of every registered model included), drives the
  conversation WebSocket once, and prints what it did and which of the forbidden modules it loaded. Then it
  runs `manage.py reaper --once`, which the web image runs too: it may load the worker's reaper, never
  llama.cpp.
- each web-side module, imported alone after `django.setup()`, loads no llama_cpp.

With the worker extra left out (pyproject.toml), llama_cpp is not even installed where the web side runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The web side's modules, each imported alone in a fresh interpreter.
WEB_MODULES = [
    "chat.views.account",
    "chat.views.conversations",
    "chat.views.organize",
    "chat.views.sharing",
    "chat.consumers",
    "chat.admin",
    "inference.admin",
    "inference.views",
    "inference.models",
    "inference.quotas",
    "inference.dispatch",
    "inference.serving",
    "gptoss_web.asgi",
    "gptoss_web.urls",
    "gptoss_web.celery",
]
ENGINE_MODULES = ("inference.runtime.engine.engine", "inference.runtime.engine.llama")
# The admin add forms' required values the page does not fill in itself, per model.
ADD_VALUES: dict[str, dict[str, Any]] = {
    "auth.user": {
        "username": "probe-user",
        "usable_password": "true",
        "password1": "a long probe password 1234",
        "password2": "a long probe password 1234",
    },
    "auth.group": {"name": "probe-group"},
    "inference.servedmodel": {"name": "probe-admin-model", "n_cpu_moe": "4", "kv_type": "q8_0"},
    "inference.quota": {"daily_tokens": "5000"},  # "user": the probe user, filled in below
    "tools.function": {
        "name": "probe_function",
        "description": "Says hello.",
        "url": "http://127.0.0.1:9/hello",
        "parameters": '{"type": "object", "properties": {"name": {"type": "string"}}}',
    },
    "tools.toolsettings": {"search_url": "http://127.0.0.1:9/search"},
    "chat.invitation": {"email": "probe@example.test"},
}


def forbidden_loaded() -> list[str]:
    """The llama.cpp, GPU-worker and engine modules this interpreter has loaded."""
    return sorted(
        m
        for m in sys.modules
        if m.split(".")[0] in {"llama_cpp", "inference"}
        and (m.startswith("llama_cpp") or m.startswith("inference.worker") or m in ENGINE_MODULES)
    )


class _FormFields(HTMLParser):
    """The fields of the admin's change form (`<form id="<model>_form">`), as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.data: dict[str, list[str]] = {}
        self.saves = False  # a "_save" button: the page may change the object
        self._in_form = False
        self._select: tuple[str, bool] | None = None
        self._textarea: str | None = None

    def _add(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id", "").endswith("_form"):
            self._in_form = True
        if not self._in_form or (not a.get("name") and tag != "option"):
            return
        name = a.get("name", "")
        if tag == "input":
            kind = a.get("type", "text").lower()
            if kind == "submit":
                self.saves |= name == "_save"
            elif kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._add(name, a.get("value") or "on")
            elif kind != "file":
                self._add(name, a.get("value", ""))
        elif tag == "textarea":
            self._textarea = name
            self._add(name, "")
        elif tag == "select":
            self._select = (name, "multiple" in a)
        elif tag == "option" and self._select and "selected" in a:
            self._add(self._select[0], a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            # Django writes a newline after <textarea>, which browsers drop.
            values = self.data[self._textarea]
            values[-1] += data if values[-1] else data.removeprefix("\n")


def _form(html: str) -> _FormFields:
    parser = _FormFields()
    parser.feed(html)
    return parser


def _errors(response: Any) -> list[str]:
    """The error lists of an admin page that refused a form."""
    import re

    return re.findall(r'class="(?:errornote|errorlist)[^"]*"[^>]*>(.*?)</', response.content.decode(), re.S)


def _probe() -> dict[str, Any]:
    """Drive the web side in this interpreter; return what it did and which forbidden modules it loaded."""
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test Client's host, the in-memory mail

    from django.apps import apps
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.test import Client, RequestFactory
    from django.urls import URLPattern, URLResolver, get_resolver, reverse

    import gptoss_web.asgi
    import gptoss_web.urls
    from chat.models import (
        ApiKey,
        ApiRequest,
        Conversation,
        GroupApiAccess,
        GroupReasoning,
        Invitation,
        Message,
        Profile,
        Project,
        Share,
    )
    from chat.services.conversations import conversation_create
    from chat.services.messages import message_send
    from inference.models import Quota, ServedModel, UsageDay
    from inference.tools.models import Function, ToolSettings
    from inference.tools.selectors import tool_settings_get

    User = get_user_model()
    root = User.objects.create_superuser("probe-root", "root@example.test", "a long probe password 1234")
    member = User.objects.create_user("probe-member", "member@example.test", "a long probe password 1234")
    group = Group.objects.create(name="probe-members")
    client = Client()
    client.force_login(root)
    request = RequestFactory().get("/admin/")
    request.user = root
    statuses: dict[str, int] = {}

    def fetch(url: str, data: dict[str, Any] | None = None) -> Any:
        response = client.post(url, data) if data is not None else client.get(url)
        statuses[("POST " if data is not None else "GET ") + url] = response.status_code
        return response

    # Sign-in attempts, failed and taken, for django-axes' admin pages.
    for password in ("a long probe password 1234", "wrong"):  # a success resets the failures
        fetch_as = Client()
        answer = fetch_as.post("/accounts/login/", {"username": "probe-member", "password": password})
        statuses[f"POST /accounts/login/ ({password})"] = answer.status_code

    # Every model of the apps chat, inference and tools: full_clean() (ServedModel's clean checks the engine
    # settings) and save().
    conversation = conversation_create(owner=root)
    message_send(conversation=conversation, text="Hello from the probe")
    invitation = Invitation(email="invitee@example.test", created_by=root)
    served = ServedModel(name="probe-model", n_cpu_moe=2, kv_type="q8_0", max_answer_tokens=512)
    api_key = ApiKey(owner=member, name="Probe key", prefix="gok_0123abcd", secret_hash="0" * 64)
    share = Share(owner=root, conversation=conversation, title="Probe", snapshot={}, message_count=0)
    project = Project(owner=root, name="Probe project", instructions="Probe.", enabled_tools=["python"])
    instances = [
        Conversation(owner=member, model_name="tiny", title="Probe"),
        api_key,
        GroupApiAccess(group=group, api_enabled=False),
        GroupReasoning(group=group, visibility="hidden"),
        Profile(user=member, about_me="Probe.", theme="dark", enabled_tools=["python"]),
        invitation,
        served,
        Quota(group=group, daily_tokens=1000),
        UsageDay(user=root, model_name="tiny", generations=1, answer_tokens=3),
        tool_settings_get(),
        Function(name="probe_clean", description="Probe.", url="http://127.0.0.1:9/", parameters={}),
        share,
        project,
    ]
    for instance in instances:
        instance.full_clean()
        instance.save()
    message = Message(conversation=instances[0], role="user", content="Hi", model_name="tiny")
    message.full_clean()
    message.save()
    instances.append(message)
    reply = Message(conversation=instances[0], role="assistant", status="done", reply_to=message)
    reply.full_clean()
    reply.save()
    request = ApiRequest(reply=reply, kind="chat.completions", prompt={"user": "Hi"}, sampling={"stop": []})
    request.full_clean()
    request.save()
    instances.append(request)
    wanted = {m for label in ("chat", "inference", "tools") for m in apps.get_app_config(label).get_models()}
    missed = wanted - {type(i) for i in instances}
    assert not missed, f"the probe saves no instance of {sorted(m.__name__ for m in missed)}: add one"
    served.refresh_from_db()
    assert served.queue_name() == "gpu.probe-model"

    # The admin: add one object of every model whose add page offers a form, then save every model's change
    # form unchanged, as a browser would submit them.
    ADD_VALUES["inference.quota"]["user"] = str(member.pk)
    admin_saves = []
    registry = dict(admin.site._registry)
    for model in registry:
        label = model._meta.label_lower
        if model is ToolSettings:
            ToolSettings.objects.all().delete()  # a singleton: its add page shows only while there is none
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
        page = fetch(url)
        if page.status_code == 403:
            continue  # read-only in admin (conversations, messages, usage)
        form = _form(page.content.decode())
        assert form.saves, f"{url} has no save button"
        data: dict[str, Any] = {**form.data, **ADD_VALUES.get(label, {}), "_save": "Save"}
        answer = fetch(url, data)
        assert answer.status_code == 302, (url, data, _errors(answer))
        admin_saves.append(f"add {label}")
    assert ServedModel.objects.get(name="probe-admin-model").n_cpu_moe == 4
    for model, model_admin in registry.items():
        label = model._meta.label_lower
        obj = model_admin.get_queryset(request).order_by("pk").last()
        if obj is None:
            # django-axes' failure log stays empty unless AXES_ENABLE_ACCESS_FAILURE_LOG is set.
            assert model._meta.app_label == "axes", f"no {label} to change in admin"
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
        page = fetch(url)
        assert page.status_code == 200, url
        form = _form(page.content.decode())
        if not form.saves:
            continue  # a view-only page
        answer = fetch(url, {**form.data, "_save": "Save"})
        assert answer.status_code == 302, (url, form.data, _errors(answer))
        admin_saves.append(f"change {label}")
    # A registry row the admin form refuses: the engine's settings check answers, with no llama.cpp.
    url = reverse("admin:inference_servedmodel_add")
    refused = fetch(url, {**_form(fetch(url).content.decode()).data, "name": "too-big", "slots": "0"})
    assert refused.status_code == 200 and b"errornote" in refused.content

    # Every URL pattern whose arguments can be filled, the admin's included.
    objects = {model: model_admin.get_queryset(request).order_by("pk").last()
               for model, model_admin in registry.items()}  # fmt: skip
    admin_prefixes = {f"{m._meta.app_label}/{m._meta.model_name}/": m for m in registry}
    urls: list[str] = []
    skipped: list[str] = []

    from django.contrib.contenttypes.models import ContentType

    conversation_type = ContentType.objects.get_for_model(Conversation).pk

    def walk(patterns: list[Any], namespace: str, model: Any, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                ns = ":".join(filter(None, [namespace, entry.namespace]))
                # The include of one ModelAdmin's pages: their object_id is one of that model's objects.
                inner = admin_prefixes.get(str(entry.pattern), model)
                walk(entry.url_patterns, ns, inner, prefix + str(entry.pattern))
                continue
            assert isinstance(entry, URLPattern)
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            params = set(entry.pattern.regex.groupindex)
            obj = objects.get(model)
            fill = {
                "conversation_id": conversation.pk,
                "token": invitation.token,
                "key_id": api_key.pk,
                "share_id": share.pk,
                "project_id": project.pk,
                "object_id": obj.pk if obj is not None else None,
                "id": obj.pk if obj is not None else None,
                "app_label": model._meta.app_label if model is not None else "chat",
            }
            if name == "admin:view_on_site":
                fill.update(content_type_id=conversation_type, object_id=conversation.pk)
            if name is None and params == {"url"}:  # the admin's catch-all: an unknown admin page
                urls.append(f"/{prefix}no-such-page/")
            elif not params <= {k for k, v in fill.items() if v is not None}:
                skipped.append(f"{name or prefix + str(entry.pattern)} {sorted(params)}")
            elif name is not None:
                urls.append(reverse(name, kwargs={k: fill[k] for k in params}))
            elif params == {"object_id"}:  # the admin's old change URL, which redirects to the new one
                route = str(entry.pattern).replace("<path:object_id>", str(fill["object_id"]))
                urls.append(f"/{prefix}{route}")
            else:
                skipped.append(f"{prefix}{entry.pattern} {sorted(params)}")

    walk(get_resolver().url_patterns, "", None, "")
    # The sign-out pages last (a GET answers 405 and signs nobody out, but keep them from the others).
    urls.sort(key=lambda u: "logout" in u)
    for url in dict.fromkeys(urls):
        fetch(url)

    # The conversation WebSocket: connect to the user's conversation, send a message, read the answers.
    from channels.testing import WebsocketCommunicator
    from django.conf import settings

    fresh = conversation_create(owner=root)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    async def socket() -> list[dict[str, Any]]:
        communicator = WebsocketCommunicator(
            gptoss_web.asgi.application,
            f"/ws/conversations/{fresh.pk}/",
            headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie.encode())],
        )
        connected, _ = await communicator.connect()
        assert connected, "the WebSocket refused its owner"
        try:
            frames = [await communicator.receive_json_from(timeout=10)]
            await communicator.send_json_to({"action": "send", "text": "Hello socket", "client_id": "probe"})
            frames += [await communicator.receive_json_from(timeout=10) for _ in range(4)]
        finally:
            await communicator.disconnect()
        from asgiref.sync import sync_to_async
        from django.db import connections

        await sync_to_async(connections.close_all)()
        return frames

    frames = asyncio.run(socket())
    loaded = forbidden_loaded()

    # The reaper, which the web image runs as well: the worker's reaper module, never llama.cpp.
    call_command("reaper", once=True)
    reaper_loaded = [m for m in forbidden_loaded() if m.startswith("llama_cpp") or m in ENGINE_MODULES]

    return {
        "urls": len(dict.fromkeys(urls)),
        "admin_urls": sum(1 for u in dict.fromkeys(urls) if u.startswith("/admin/")),
        "skipped": skipped,
        "requests": len(statuses),
        # /healthz answers 503 by design while no GPU worker is alive (none runs here).
        "errors": {u: s for u, s in statuses.items() if s >= 500 and (u, s) != ("GET /healthz", 503)},
        "healthz": statuses.get("GET /healthz"),
        "admin_saves": admin_saves,
        "models_saved": sorted(type(i)._meta.label for i in instances),
        "frames": [f["type"] for f in frames],
        "loaded": loaded,
        "reaper_loaded": reaper_loaded,
        "reaper_imported": "inference.worker.reaper" in sys.modules,
    }


def _env(database_url: str) -> dict[str, str]:
    from django.conf import settings

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "GPTOSS_REDIS_PREFIX": settings.GPTOSS_REDIS_PREFIX,
        "GPTOSS_VAR_DIR": str(settings.GPTOSS_VAR_DIR),
    }


@pytest.mark.django_db(transaction=True)
def test_the_web_side_driven_everywhere_loads_no_llama_cpp() -> None:
    from tests.live import test_database_url

    result = subprocess.run(
        [sys.executable, "-m", "tests.test_web_loads_no_llama_cpp"],
        cwd=ROOT, env=_env(test_database_url()), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-10000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))
    # The walk happened: chat, ops, accounts and the admin's pages of every model, each answered below 500.
    assert report["urls"] >= 60 and report["admin_urls"] >= 50, report
    assert report["errors"] == {}, report["errors"]
    assert {"add inference.servedmodel", "change inference.servedmodel"} <= set(report["admin_saves"])
    assert len(report["admin_saves"]) >= 12, report["admin_saves"]
    assert len(report["models_saved"]) >= 8, report["models_saved"]
    assert report["frames"][0] == "state" and "ack" in report["frames"], report["frames"]
    # What this is about.
    assert report["loaded"] == []
    assert report["reaper_imported"] and report["reaper_loaded"] == []


@pytest.mark.parametrize("module", WEB_MODULES)
def test_each_web_module_alone_loads_no_llama_cpp(module: str) -> None:
    probe = (
        "import django, importlib, json, sys; django.setup(); "
        f"importlib.import_module({module!r}); "
        "from tests.test_web_loads_no_llama_cpp import forbidden_loaded; "
        "print(json.dumps(forbidden_loaded()))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


if __name__ == "__main__":
    print(json.dumps(_probe()))
