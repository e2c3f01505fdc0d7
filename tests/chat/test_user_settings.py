"""Personal and per-conversation settings: the profile page and what it changes, a conversation's sampling
settings and their checks, and who may see the model's reasoning."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from chat.forms import SettingsForm
from chat.models import Conversation, GroupReasoning, Message, Profile, ReasoningVisibility
from chat.selectors import profile_get, reasoning_hidden_among, reasoning_shown
from chat.services.messages import message_send
from chat.services.profiles import profile_update
from inference.models import ServedModel
from inference.tools.models import ToolSettings
from tests.factories import make_conversation, make_exchange

pytestmark = pytest.mark.django_db

PROFILE = {
    "about_me": "I run the billing service.",
    "answer_style": "Be brief.",
    "model_name": "",
    "reasoning_effort": "",
    "enabled_tools": [],
    "theme": "system",
    "notifications": False,
}


def _settings_post(conversation: Conversation, **fields: object) -> dict[str, object]:
    """The Settings popover's form as a browser posts it, with *fields* changed."""
    data: dict[str, object] = {
        "model_name": conversation.model_name,
        "reasoning_effort": conversation.reasoning_effort,
        "instructions": conversation.instructions,
        "temperature": "",
        "top_p": "",
        "max_answer_tokens": "",
        **fields,
    }
    return {f"settings-{name}": value for name, value in data.items()}


def _sampling(conversation: Conversation) -> tuple[float | None, float | None, int | None]:
    return conversation.temperature, conversation.top_p, conversation.max_answer_tokens


def _errors(html: str) -> list[str]:
    return re.findall(r'<p class="field-error"[^>]*>([^<]*)</p>', html)


# --- A conversation's sampling -----------------------------------------------------------------------------


def test_sampling_settings_are_saved_and_shown_in_the_settings_popover(
    alice: Any, alice_client: Client
) -> None:
    conversation = make_conversation(alice)
    url = reverse("chat:conversation_settings", args=[conversation.pk])
    response = alice_client.post(
        url, _settings_post(conversation, temperature="0.3", top_p="0.9", max_answer_tokens="500")
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert _sampling(conversation) == (0.3, 0.9, 500)
    page = alice_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    popover = page[page.index('class="popover settings-panel"') :]
    assert 'name="settings-temperature" value="0.3"' in popover
    assert 'name="settings-top_p" value="0.9"' in popover
    assert 'name="settings-max_answer_tokens" value="500"' in popover
    assert "16 to 4,096 tokens" in popover  # the range, with the model's own limit

    # Blank again: the defaults.
    alice_client.post(url, _settings_post(conversation))
    conversation.refresh_from_db()
    assert (conversation.temperature, conversation.top_p, conversation.max_answer_tokens) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"temperature": "2.5"}, "Temperature must be between 0 and 2; leave it blank for the default."),
        ({"temperature": "-0.1"}, "Temperature must be between 0 and 2; leave it blank for the default."),
        ({"temperature": "hot"}, "Temperature must be a number, e.g. 0.7."),
        ({"top_p": "0"}, "Top-p must be between 0.01 and 1; leave it blank for the default."),
        ({"top_p": "1.5"}, "Top-p must be between 0.01 and 1; leave it blank for the default."),
        (
            {"max_answer_tokens": "8"},
            "Answer length limit must be between 16 and 4,096 tokens; leave it blank for the default.",
        ),
        (
            {"max_answer_tokens": "5000"},
            "Answer length limit must be between 16 and 4,096 tokens; leave it blank for the default.",
        ),
        ({"max_answer_tokens": "1.5"}, "Answer length limit must be a whole number of tokens."),
    ],
)
def test_a_sampling_setting_out_of_range_is_refused_naming_the_field_and_its_range(
    alice: Any, alice_client: Client, fields: dict[str, str], error: str
) -> None:
    conversation = make_conversation(alice, instructions="Keep me")
    url = reverse("chat:conversation_settings", args=[conversation.pk])
    response = alice_client.post(url, _settings_post(conversation, instructions="Changed", **fields))
    assert response.status_code == 400
    html = response.content.decode()
    assert _errors(html) == [error]
    assert 'class="popover settings-panel" open' in html  # the popover stays open on its error
    conversation.refresh_from_db()
    assert conversation.instructions == "Keep me"  # nothing was saved
    assert (conversation.temperature, conversation.top_p, conversation.max_answer_tokens) == (
        None,
        None,
        None,
    )


def test_the_length_limit_is_checked_against_the_model_chosen_in_the_same_form(alice: Any) -> None:
    """A limit may only lower the budget of the model the conversation will use."""
    ServedModel.objects.create(name="tiny", source="tiny", context=8192)
    ServedModel.objects.create(name="short", source="tiny", context=1024, max_answer_tokens=300)
    conversation = make_conversation(alice, model_name="tiny")
    form = SettingsForm.for_conversation(
        conversation, data=_settings_post(conversation, model_name="short", max_answer_tokens="400")
    )
    assert not form.is_valid()
    assert form.errors["max_answer_tokens"] == [
        "Answer length limit must be between 16 and 300 tokens; leave it blank for the default."
    ]
    form = SettingsForm.for_conversation(
        conversation, data=_settings_post(conversation, model_name="short", max_answer_tokens="300")
    )
    assert form.is_valid(), form.errors


def test_the_database_refuses_sampling_outside_the_ranges(alice: Any) -> None:
    conversation = make_conversation(alice)
    for field, value in (("temperature", 3.0), ("top_p", 0.0), ("max_answer_tokens", 4)):
        with pytest.raises(IntegrityError), transaction.atomic():
            Conversation.objects.filter(pk=conversation.pk).update(**{field: value})


def test_a_length_limit_holds_only_its_tokens_against_the_daily_quota(alice: Any) -> None:
    conversation = make_conversation(alice)
    _, reply = message_send(conversation=conversation, text="First")
    assert reply.reserved_tokens == settings.GPTOSS_MAX_ANSWER_TOKENS
    Message.objects.filter(pk=reply.pk).update(status="done", reserved_tokens=0)

    conversation.max_answer_tokens = 200
    conversation.save(update_fields=["max_answer_tokens"])
    _, reply = message_send(conversation=conversation, text="Second")
    assert reply.reserved_tokens == 200


# --- The profile -------------------------------------------------------------------------------------------


def test_the_profile_page_is_linked_from_the_user_menu_and_saves_every_setting(
    alice: Any, alice_client: Client
) -> None:
    ToolSettings.objects.update_or_create(pk=1, defaults={"python_enabled": True})
    index = alice_client.get("/").content.decode()
    menu = index[index.index('class="user-menu"') :]
    assert menu.index('href="/settings/profile/">Profile<') < menu.index(
        'href="/settings/api-keys/">API keys<'
    )

    page = alice_client.get(reverse("chat:profile"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Custom instructions" in html and "Site default (tiny)" in html and 'value="python"' in html

    response = alice_client.post(
        reverse("chat:profile"),
        {
            "about_me": "I run the billing service.",
            "answer_style": "Be brief.",
            "model_name": "tiny",
            "reasoning_effort": "high",
            "enabled_tools": ["python"],
            "theme": "dark",
            "notifications": "on",
        },
    )
    assert response.status_code == 302
    profile = Profile.objects.get(user=alice)
    assert (profile.about_me, profile.answer_style, profile.model_name, profile.reasoning_effort) == (
        "I run the billing service.",
        "Be brief.",
        "tiny",
        "high",
    )
    assert (profile.enabled_tools, profile.theme, profile.notifications) == (["python"], "dark", True)
    html = alice_client.get(reverse("chat:profile")).content.decode()
    assert "Profile saved." in html
    assert re.search(r'<input type="radio" name="theme" value="dark"[^>]* checked>', html)


def test_a_profile_with_a_model_its_user_may_not_use_is_refused(alice: Any, alice_client: Client) -> None:
    staff = Group.objects.create(name="staff")
    ServedModel.objects.create(name="tiny", source="tiny")
    ServedModel.objects.create(name="secret-oss", source="tiny").groups.add(staff)
    response = alice_client.post(reverse("chat:profile"), {**PROFILE, "model_name": "secret-oss"})
    assert response.status_code == 400
    assert "Select a valid choice. secret-oss is not one of the available choices." in _errors(
        response.content.decode()
    )
    assert not Profile.objects.filter(user=alice).exists()


@pytest.mark.parametrize(
    ("theme", "scheme", "dark_media"),
    [
        ("system", "light dark", "(prefers-color-scheme: dark)"),
        ("light", "light", "not all"),
        ("dark", "dark", "all"),
    ],
)
def test_the_theme_is_set_by_the_server_on_every_page(
    alice: Any, alice_client: Client, theme: str, scheme: str, dark_media: str
) -> None:
    """On <html>, in the color-scheme the browser paints with, and as the media of the dark palette: the
    first paint has the chosen theme, with no script and no flash."""
    profile_update(user=alice, **{**PROFILE, "theme": theme})
    for url in ("/", reverse("chat:profile"), reverse("chat:api_keys")):
        html = alice_client.get(url).content.decode()
        assert f'<html lang="en" data-theme="{theme}"' in html
        assert f'<meta name="color-scheme" content="{scheme}">' in html
        assert re.search(
            rf'<link rel="stylesheet" href="[^"]*dark[^"]*\.css" media="{re.escape(dark_media)}">', html
        )


def test_signed_out_pages_follow_the_system(client: Client) -> None:
    html = client.get(reverse("login")).content.decode()
    assert '<html lang="en" data-theme="system" data-notifications="off">' in html
    assert 'media="(prefers-color-scheme: dark)"' in html


def test_the_notification_switch_saves_the_profile_and_the_page_reads_it(
    alice: Any, alice_client: Client
) -> None:
    assert 'data-notifications="off"' in alice_client.get("/").content.decode()
    url = reverse("chat:profile_notifications")
    response = alice_client.post(url, {"notifications": "on"}, headers={"accept": "application/json"})
    assert response.json() == {"notifications": True}
    assert profile_get(user=alice).notifications is True
    assert 'data-notifications="on"' in alice_client.get("/").content.decode()
    assert alice_client.post(url, {}).json() == {"notifications": False}
    assert profile_get(user=alice).notifications is False
    assert alice_client.get(url).status_code == 405


def test_new_conversations_start_with_the_profiles_defaults(alice: Any, alice_client: Client) -> None:
    ServedModel.objects.create(name="tiny", source="tiny", default_reasoning_effort="medium")
    ServedModel.objects.create(name="other-oss", source="tiny", default_reasoning_effort="low")
    ToolSettings.objects.update_or_create(pk=1, defaults={"python_enabled": True})
    profile_update(
        user=alice,
        **{**PROFILE, "model_name": "other-oss", "reasoning_effort": "high", "enabled_tools": ["python"]},
    )
    alice_client.post(reverse("chat:conversation_create"))
    conversation = Conversation.objects.get(owner=alice)
    assert (conversation.model_name, conversation.reasoning_effort, conversation.enabled_tools) == (
        "other-oss",
        "high",
        ["python"],
    )
    # The profile's instructions are the user's, not the conversation's: they are not copied into it.
    assert conversation.instructions == ""


def test_a_default_the_user_may_no_longer_use_is_passed_over(alice: Any) -> None:
    ServedModel.objects.create(name="tiny", source="tiny", default_reasoning_effort="low")
    ServedModel.objects.create(name="other-oss", source="tiny")
    ToolSettings.objects.update_or_create(pk=1, defaults={"python_enabled": True})
    profile_update(user=alice, **{**PROFILE, "model_name": "other-oss", "enabled_tools": ["python"]})
    # Later, an admin disables the model and Python.
    ServedModel.objects.filter(name="other-oss").update(enabled=False)
    ToolSettings.objects.filter(pk=1).update(python_enabled=False)
    conversation = make_conversation(alice)
    assert (conversation.model_name, conversation.reasoning_effort, conversation.enabled_tools) == (
        "tiny",
        "low",  # the site default model's own effort, as the profile leaves it to the model
        [],
    )


def test_without_a_profile_new_conversations_start_as_before(alice: Any) -> None:
    conversation = make_conversation(alice)
    assert (conversation.model_name, conversation.reasoning_effort, conversation.enabled_tools) == (
        settings.GPTOSS_MODEL_NAME,
        "medium",
        [],
    )
    assert not Profile.objects.filter(user=alice).exists()  # reading the defaults writes nothing


# --- Reasoning visibility ----------------------------------------------------------------------------------


def _group(name: str, visibility: str | None) -> Group:
    group = Group.objects.create(name=name)
    if visibility is not None:
        GroupReasoning.objects.create(group=group, visibility=visibility)
    return group


def test_reasoning_is_shown_unless_a_group_of_the_user_hides_it(alice: Any, bob: Any) -> None:
    """Hidden wins: one group that hides it hides it, whatever the user's other groups say."""
    assert reasoning_shown(user=alice)
    alice.groups.add(_group("plain", None), _group("shows", ReasoningVisibility.COLLAPSED))
    assert reasoning_shown(user=alice)
    hides = _group("hides", ReasoningVisibility.HIDDEN)
    alice.groups.add(hides)
    assert not reasoning_shown(user=alice)
    assert reasoning_shown(user=bob)
    assert reasoning_hidden_among(user_ids=[alice.pk, bob.pk]) == {alice.pk}
    GroupReasoning.objects.filter(group=hides).update(visibility=ReasoningVisibility.COLLAPSED)
    assert reasoning_shown(user=alice)


def _answered(conversation: Conversation) -> Message:
    _, reply = message_send(conversation=conversation, text="Please think about it")
    Message.objects.filter(pk=reply.pk).update(
        status="done",
        reasoning="SECRET-CHAIN-OF-THOUGHT weighing the options",
        content="The answer.",
        reasoning_tokens=7,
        answer_tokens=3,
        ttft_ms=5,
        queue_wait_ms=1,
        reserved_tokens=0,
    )
    return reply


def test_the_page_of_a_user_whose_group_hides_reasoning_never_contains_it(
    alice: Any, alice_client: Client
) -> None:
    conversation = make_conversation(alice)
    _answered(conversation)
    url = reverse("chat:conversation", args=[conversation.pk])
    shown = alice_client.get(url).content.decode()
    assert "SECRET-CHAIN-OF-THOUGHT" in shown  # collapsed, by default

    alice.groups.add(_group("hides", ReasoningVisibility.HIDDEN))
    hidden = alice_client.get(url).content.decode()
    assert "SECRET-CHAIN-OF-THOUGHT" not in hidden
    assert "The answer." in hidden
    assert "3 tokens" in hidden and "7 · 3 tokens" in hidden  # the figures stay


def test_search_never_finds_or_offers_reasoning_a_group_hides(alice: Any, alice_client: Client) -> None:
    conversation = make_conversation(alice)
    make_exchange(conversation, "Hi", "Hello!", reasoning="Think about the zeppelin first.")
    asked = {"q": "zeppelin", "reasoning": "on"}
    assert alice_client.get(reverse("chat:search_hits"), asked).json()["hits"]  # found while shown

    alice.groups.add(_group("hides", ReasoningVisibility.HIDDEN))
    assert alice_client.get(reverse("chat:search_hits"), asked).json() == {"query": "zeppelin", "hits": []}
    page = alice_client.get(reverse("chat:search"), asked).content.decode()
    assert "zeppelin first" not in page and "Nothing matches “zeppelin”." in page
    assert 'name="reasoning"' not in page  # no "Include reasoning" to tick
    assert "data-no-reasoning" in page  # nor in the palette (static/js/search_palette.js)


def test_staff_see_the_reasoning_switch_on_the_group_admin(db: None) -> None:
    from tests.factories import UserFactory

    group = Group.objects.create(name="contractors")
    root = Client()
    root.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:auth_group_change", args=[group.pk])
    assert "Reasoning visibility" in root.get(url).content.decode()
    response = root.post(url, {
        "name": "contractors",
        "api_access-TOTAL_FORMS": "0", "api_access-INITIAL_FORMS": "0",
        "api_access-MIN_NUM_FORMS": "0", "api_access-MAX_NUM_FORMS": "1",
        "reasoning-TOTAL_FORMS": "1", "reasoning-INITIAL_FORMS": "0",
        "reasoning-MIN_NUM_FORMS": "0", "reasoning-MAX_NUM_FORMS": "1",
        "reasoning-0-group": str(group.pk), "reasoning-0-id": "", "reasoning-0-visibility": "hidden",
        "_save": "Save",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    assert GroupReasoning.objects.get(group=group).visibility == "hidden"
