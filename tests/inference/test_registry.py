"""The model registry, group limits and quotas: in admin, in the chat UI, before queueing, in the task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from chat.errors import ChatError
from chat.models import Message
from chat.services.messages import message_send
from inference import selectors
from inference.models import Quota, ServedModel, UsageDay
from inference.selectors import model_queue
from inference.services import usage_record
from inference.worker.process import worker_config
from inference.worker.tasks import generate_reply_task
from tests.factories import UserFactory, make_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def research() -> Group:
    return Group.objects.create(name="research")


@pytest.fixture
def models(research: Group) -> tuple[ServedModel, ServedModel]:
    """`tiny` for everyone, `big` (gpt-oss-120b) for the research group only."""
    tiny = ServedModel.objects.create(name="tiny", source="tiny", context=1024, slots=2)
    big = ServedModel.objects.create(name="big", source="gpt-oss-120b", default_reasoning_effort="high")
    big.groups.add(research)
    return tiny, big


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record (task name, queue) of every task sent to Celery instead of sending it."""
    from inference import dispatch

    sent: list[tuple[str, str]] = []

    class _Result:
        id = "test-task"

    def send_task(name: str, *, args: list, queue: str) -> _Result:
        sent.append((name, queue))
        return _Result()

    monkeypatch.setattr(dispatch.app, "send_task", send_task)
    return sent


def _admin_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "gpt-oss-20b", "label": "", "enabled": "on", "position": "0", "source": "gpt-oss-20b",
        "model_path": "", "context": "8192", "slots": "4", "max_answer_tokens": "", "n_gpu_layers": "-1",
        "n_cpu_moe": "0", "kv_type": "f16", "n_ubatch": "512", "default_reasoning_effort": "medium",
        "queue": "",
    }  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_cpu_moe": "30"}, "gpt-oss-20b has only 24 layers"),
        ({"n_cpu_moe": "4", "cpu_moe": "on"}, "cpu_moe and n_cpu_moe are both set"),
        ({"cpu_moe": "on", "n_gpu_layers": "0"}, "Experts can stay in RAM only when layers run on the GPU"),
        ({"kv_type": "q5_1"}, "Select a valid choice"),
        ({"max_answer_tokens": "9000"}, "Must be below the context"),
        ({"source": "path"}, "the GGUF file&#x27;s path"),
        ({"slots": "300"}, "slots=300 is out of range: use 1 to 256 parallel slots"),
        ({"context": "5000000"}, "context × slots = 20000000 KV cells is absurdly large"),
    ],
)
def test_admin_refuses_impossible_settings(
    staff_client: Client, overrides: dict[str, str], message: str
) -> None:
    response = staff_client.post("/admin/inference/servedmodel/add/", _admin_form(**overrides))
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    # The form's fields are named, not the engine's.
    assert "n_slots" not in page and "n_ctx" not in page
    assert not ServedModel.objects.exists()


def test_admin_saves_a_model_with_experts_in_ram(staff_client: Client, research: Group) -> None:
    form = _admin_form(n_cpu_moe="12", n_ubatch="2048", queue="gpu.big-box", groups=[str(research.pk)])
    response = staff_client.post("/admin/inference/servedmodel/add/", form)
    assert response.status_code == 302
    model = ServedModel.objects.get(name="gpt-oss-20b")
    assert (model.n_cpu_moe, model.n_ubatch, list(model.groups.all())) == (12, 2048, [research])
    assert model_queue("gpt-oss-20b") == "gpu.big-box"
    assert staff_client.get("/admin/inference/servedmodel/").status_code == 200


def test_users_see_and_pick_only_the_models_they_may_use(
    models: tuple[ServedModel, ServedModel], research: Group
) -> None:
    outsider, member = UserFactory(username="carol"), UserFactory(username="dave")
    member.groups.add(research)
    assert [m.name for m in selectors.served_model_list(user=outsider)] == ["tiny"]
    assert [m.name for m in selectors.served_model_list(user=member)] == ["big", "tiny"]
    for user, allowed in ((outsider, False), (member, True)):
        client = Client()
        client.force_login(user)
        conversation = make_conversation(user)
        assert conversation.model_name == "tiny"
        page = client.get(f"/c/{conversation.pk}/").content.decode()
        assert ('value="big"' in page) is allowed and 'value="tiny"' in page
        response = client.post(
            f"/c/{conversation.pk}/settings/",
            {"settings-model_name": "big", "settings-reasoning_effort": "low", "settings-instructions": ""},
        )
        conversation.refresh_from_db()
        assert (response.status_code, conversation.model_name) == ((302, "big") if allowed else (400, "tiny"))


def test_a_model_taken_away_is_refused_before_queueing_and_in_the_task(
    models: tuple[ServedModel, ServedModel],
    research: Group,
    django_capture_on_commit_callbacks: Any,
    sent_tasks: list[tuple[str, str]],
) -> None:
    member = UserFactory(username="erin")
    member.groups.add(research)
    conversation = make_conversation(member, model_name="big")
    assert conversation.reasoning_effort == "high"  # the model's default effort
    with django_capture_on_commit_callbacks(execute=True):
        _, reply = message_send(conversation=conversation, text="hello")
    assert sent_tasks == [("inference.tasks.generate_reply_task", "gpu.big")]
    member.groups.remove(research)  # the admin takes the model away while the reply waits in the queue
    generate_reply_task.run(reply.pk)  # refused before any engine is needed
    reply.refresh_from_db()
    assert reply.status == "failed" and "not available to you" in reply.error
    assert not reply.retryable  # Retry would be refused the same way: none is offered
    with (
        django_capture_on_commit_callbacks() as queued,
        pytest.raises(ChatError, match="not available to you"),
    ):
        message_send(conversation=conversation, text="again")
    assert queued == [] and conversation.messages.count() == 2


def test_quota_exceeded_says_when_it_resets_and_queues_nothing(
    alice: Any,
    alice_client: Client,
    django_capture_on_commit_callbacks: Any,
    sent_tasks: list[tuple[str, str]],
) -> None:
    Quota.objects.create(user=alice, daily_tokens=1000)
    UsageDay.objects.create(user=alice, model_name="tiny", reasoning_tokens=400, answer_tokens=600)
    conversation = make_conversation(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/c/{conversation.pk}/messages/", {"text": "one more?"})
    assert response.status_code == 409
    page = response.content.decode()
    assert "You have used your 1,000 tokens for today" in page and "Your quota resets at 00:00" in page
    assert sent_tasks == [] and conversation.messages.count() == 0
    # Yesterday's usage does not count today.
    UsageDay.objects.filter(user=alice).update(day=timezone.localdate() - timedelta(days=1))
    message_send(conversation=conversation, text="one more?")
    assert conversation.messages.count() == 2


def test_limits_come_from_the_user_then_the_most_generous_group_then_the_defaults(
    alice: Any, settings: Any
) -> None:
    settings.GPTOSS_DAILY_TOKEN_LIMIT = 500
    assert selectors.limits_get(user=alice) == selectors.Limits(500, settings.GPTOSS_MAX_IN_FLIGHT_PER_USER)
    small, large = Group.objects.create(name="small"), Group.objects.create(name="large")
    alice.groups.add(small, large)
    Quota.objects.create(group=small, daily_tokens=100, max_in_flight=1)
    Quota.objects.create(group=large, daily_tokens=5000, max_in_flight=3)
    assert selectors.limits_get(user=alice) == selectors.Limits(5000, 3)
    Quota.objects.create(user=alice, daily_tokens=None, max_in_flight=1)
    assert selectors.limits_get(user=alice) == selectors.Limits(None, 1)


def test_the_in_flight_limit_of_a_quota_applies(alice: Any) -> None:
    Quota.objects.create(user=alice, max_in_flight=1)
    message_send(conversation=make_conversation(alice), text="first")
    with pytest.raises(ChatError, match="You already have 1 reply being written"):
        message_send(conversation=make_conversation(alice), text="second")


def test_usage_is_recorded_per_user_day_and_model(alice: Any, staff_client: Client) -> None:
    conversation = make_conversation(alice)
    _, reply = message_send(conversation=conversation, text="hello")
    now = timezone.now()
    Message.objects.filter(pk=reply.pk).update(
        status="done", prompt_tokens=50, reasoning_tokens=7, answer_tokens=13,
        started_at=now - timedelta(seconds=2.5), finished_at=now,
    )  # fmt: skip
    usage_record(message_id=reply.pk)
    usage_record(message_id=reply.pk)
    usage = UsageDay.objects.get(user=alice)
    assert (usage.generations, usage.prompt_tokens, usage.generated_tokens) == (2, 100, 40)
    assert usage.gpu_seconds == pytest.approx(5.0)
    assert selectors.tokens_used_today(user=alice) == 40
    page = staff_client.get("/admin/inference/usageday/").content.decode()
    assert "alice" in page and "5.0" in page


def test_the_worker_reads_its_registry_row_and_falls_back_to_the_environment(settings: Any) -> None:
    settings.GPTOSS_MODEL = "tiny"
    fallback = worker_config()
    assert (fallback.context, fallback.engine.n_slots) == (8192, 4)
    ServedModel.objects.create(
        name="tiny", source="tiny", context=2048, slots=3, n_ubatch=256, kv_type="q8_0"
    )
    config = worker_config()
    assert (config.model_name, config.context, config.engine.n_slots, config.engine.n_ctx) == (
        "tiny",
        2048,
        3,
        6144,
    )
    assert (config.engine.kv_type, config.engine.n_ubatch, config.max_answer_tokens) == ("q8_0", 256, 1024)
