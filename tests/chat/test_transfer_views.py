"""Export, import and share pages: what each answers, to the owner, to a stranger, to nobody signed in."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import AsyncClient, Client
from django.urls import reverse

from chat import transfer
from chat.interchange import gptoss
from chat.models import Conversation, Message, Share
from chat.services import shares
from tests.chat.test_transfers import answered, snapshot
from tests.chat.transfer_fixtures import chatgpt_bytes
from tests.factories import UserFactory, make_conversation

pytestmark = pytest.mark.django_db


def upload(client: Client, data: bytes, name: str = "conversations.json") -> Any:
    return client.post(reverse("chat:data"), {"file": SimpleUploadedFile(name, data)})


def test_one_conversation_downloads_as_markdown_and_as_json(alice_client: Client, alice: Any) -> None:
    conversation = answered(alice)
    page = alice_client.get(reverse("chat:conversation", args=[conversation.pk]))
    for name in ("export_md", "export_json", "share_create", "shares"):
        url = reverse(f"chat:{name}", args=[] if name == "shares" else [conversation.pk])
        assert url.encode() in page.content, name

    markdown = alice_client.get(reverse("chat:export_md", args=[conversation.pk]))
    assert markdown.status_code == 200
    assert markdown["Content-Type"] == "text/markdown; charset=utf-8"
    assert markdown["Content-Disposition"] == 'attachment; filename="tides.md"'
    assert "no-store" in markdown["Cache-Control"]
    assert markdown.content.decode().startswith("# Tides\n")

    exported = alice_client.get(reverse("chat:export_json", args=[conversation.pk]))
    assert exported["Content-Type"] == "application/json; charset=utf-8"
    assert exported["Content-Disposition"] == 'attachment; filename="tides.json"'
    document = json.loads(exported.content)
    assert gptoss.read(document, "x") == transfer.conversation_record(conversation)


def test_every_new_url_is_404_to_a_stranger(alice: Any, bob_client: Client) -> None:
    conversation = answered(alice)
    share = shares.share_create(conversation=conversation)
    before = snapshot()
    for name in ("export_md", "export_json"):
        assert bob_client.get(reverse(f"chat:{name}", args=[conversation.pk])).status_code == 404
    assert bob_client.post(reverse("chat:share_create", args=[conversation.pk])).status_code == 404
    assert bob_client.post(reverse("chat:share_revoke", args=[share.pk])).status_code == 404
    assert bob_client.get(reverse("chat:share", args=["no-such-token"])).status_code == 404
    assert bob_client.post(reverse("chat:share_continue", args=["no-such-token"])).status_code == 404
    # Bob's lists and archive hold nothing of Alice's.
    assert b"Tides" not in bob_client.get(reverse("chat:shares")).content
    archive = zipfile.ZipFile(
        io.BytesIO(b"".join(bob_client.get(reverse("chat:account_export")).streaming_content))
    )
    assert not [n for n in archive.namelist() if "/conversations/" in n]
    assert snapshot() == before


def test_nobody_signed_in_is_sent_to_sign_in(alice: Any) -> None:
    conversation = answered(alice)
    share = shares.share_create(conversation=conversation)
    for url in (
        reverse("chat:export_md", args=[conversation.pk]),
        reverse("chat:account_export"),
        reverse("chat:data"),
        reverse("chat:shares"),
        reverse("chat:share", args=[share.token]),
    ):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_the_whole_account_streams_as_a_zip_that_unzips(alice_client: Client, alice: Any, bob: Any) -> None:
    first = answered(alice)
    second = make_conversation(alice, title="Ünïcode / slashes")
    Message.objects.create(conversation=second, role="user", content="hello")
    answered(bob)
    share = shares.share_create(conversation=first)
    response = alice_client.get(reverse("chat:account_export"))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="gptoss-web-alice.zip"'
    chunks = list(response.streaming_content)
    assert len(chunks) > 4  # member by member, not one block
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    names = archive.namelist()
    top = names[0].split("/")[0]
    assert re.fullmatch(r"gptoss-web-alice-\d{4}-\d\d-\d\d", top)
    assert names == [
        f"{top}/README.md",
        f"{top}/account.json",
        f"{top}/conversations/0001-tides.json",
        f"{top}/conversations/0001-tides.md",
        f"{top}/conversations/0002-unicode-slashes.json",
        f"{top}/conversations/0002-unicode-slashes.md",
    ]
    account = json.loads(archive.read(f"{top}/account.json"))
    assert account["username"] == "alice"
    assert account["shares"][0]["url"] == f"http://testserver/s/{share.token}/"
    tides = json.loads(archive.read(f"{top}/conversations/0001-tides.json"))
    assert gptoss.read(tides, "t") == transfer.conversation_record(first)
    # The zip itself imports: every conversation comes back.
    before = Conversation.objects.filter(owner=alice).count()
    assert upload(alice_client, b"".join(chunks), "export.zip").status_code == 302
    assert Conversation.objects.filter(owner=alice).count() == before + 2


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_zip_is_sent_as_it_is_written() -> None:
    """Daphne serves through Django's ASGI handler, which would read a plain iterator whole first."""
    alice = await sync_to_async(UserFactory)(username="alice")
    for n in range(3):
        await sync_to_async(make_conversation)(alice, title=f"Conversation {n}")
    client = AsyncClient()
    await client.aforce_login(alice)
    try:
        response = await client.get(reverse("chat:account_export"))
        assert response.status_code == 200 and response.is_async
        chunks = [chunk async for chunk in response.streaming_content]
    finally:
        await sync_to_async(
            connections.close_all
        )()  # the request thread's, so the test database can be dropped
    assert len(chunks) == 2 + 2 * 3 + 1  # README, account, per conversation two, the central directory
    assert len(zipfile.ZipFile(io.BytesIO(b"".join(chunks))).namelist()) == 8


def test_import_page_imports_a_file_and_says_what_it_left_out(alice_client: Client, alice: Any) -> None:
    page = alice_client.get(reverse("chat:data"))
    assert page.status_code == 200
    assert (
        b"At most 50 MB a file (unpacked, for a zip), 2,000 conversations and 20,000 messages."
        in page.content
    )
    assert reverse("chat:data").encode() in alice_client.get(reverse("chat:index")).content  # the user menu

    response = upload(alice_client, chatgpt_bytes())
    tides = Conversation.objects.get(owner=alice, title="Tides")
    assert response.status_code == 302 and response["Location"] == reverse(
        "chat:conversation", args=[tides.pk]
    )
    shown = alice_client.get(response["Location"]).content.decode()
    assert "Imported 2 conversations (7 messages) from ChatGPT." in shown
    assert "Not imported: images and files (only text is imported): 1." in shown
    # Imported text renders like any message: as text, never as markup.
    assert "&lt;script&gt;window.__xss++&lt;/script&gt;" in shown
    assert "&lt;img src=x onerror=" in shown
    assert "<script>window" not in shown and "<img src=x" not in shown


def test_a_refused_file_is_named_on_the_page_and_imports_nothing(alice_client: Client, alice: Any) -> None:
    answered(alice)
    before = snapshot()
    bad = chatgpt_bytes().replace(b'"And this beach?"', b"17")
    response = upload(alice_client, bad)
    assert response.status_code == 400
    assert (
        b"conversations.json: conversation 1, message &#x27;u2&#x27;: content is not text" in response.content
    )
    assert upload(alice_client, b"").status_code == 400
    assert b"The file is empty." in upload(alice_client, b"").content
    assert b"Choose a file to import." in alice_client.post(reverse("chat:data")).content
    assert snapshot() == before


def test_a_file_over_the_cap_is_refused_before_it_is_read(
    alice_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chat.interchange.files.MAX_FILE_BYTES", 1024 * 1024)
    response = upload(alice_client, b" " * (1536 * 1024), "big.json")
    assert response.status_code == 400
    assert b"big.json: 1.5 MB is larger than the limit of 1 MB" in response.content


def test_share_create_list_read_continue_revoke(
    alice_client: Client, bob_client: Client, alice: Any, bob: Any
) -> None:
    conversation = answered(alice)
    response = alice_client.post(reverse("chat:share_create", args=[conversation.pk]))
    share = Share.objects.get()
    url = f"http://testserver/s/{share.token}/"
    assert response["Location"] == reverse("chat:conversation", args=[conversation.pk]) + "?shared=1"
    page = alice_client.get(response["Location"]).content.decode()
    assert url in page and "Link created" in page
    assert url in alice_client.get(reverse("chat:shares")).content.decode()

    shared = bob_client.get(reverse("chat:share", args=[share.token]))
    assert shared.status_code == 200
    html = shared.content.decode()
    assert "Shared by <strong>alice</strong>" in html and "Because of <strong>the Moon</strong>" in html
    assert "<math" in html  # rendered like every message
    assert "&lt;script&gt;window.__xss++&lt;/script&gt;" in html and "<script>window" not in html
    # No id of a stored row behind the page: not the conversation's, not its messages'.
    assert f"/c/{conversation.pk}/" not in html
    assert re.findall(r'id="message-(\d+)"', html) == ["1", "2", "3", "4"]

    continued = bob_client.post(reverse("chat:share_continue", args=[share.token]))
    copy = Conversation.objects.get(owner=bob)
    assert continued["Location"] == reverse("chat:conversation", args=[copy.pk])
    assert (
        "your own copy of “Tides”, shared by alice" in bob_client.get(continued["Location"]).content.decode()
    )
    assert copy.messages.count() == 4

    assert alice_client.post(reverse("chat:share_revoke", args=[share.pk])).status_code == 302
    for client in (bob_client, alice_client):
        assert client.get(reverse("chat:share", args=[share.token])).status_code == 404
        assert client.post(reverse("chat:share_continue", args=[share.token])).status_code == 404
    listed = alice_client.get(reverse("chat:shares")).content.decode()
    assert "Revoked" in listed and url not in listed
    # Bob's copy is his: revoking the share does not take it back.
    assert bob_client.get(reverse("chat:conversation", args=[copy.pk])).status_code == 200


def test_sharing_an_empty_conversation_says_why_not(alice_client: Client, alice: Any) -> None:
    conversation = make_conversation(alice)
    response = alice_client.post(reverse("chat:share_create", args=[conversation.pk]), follow=True)
    assert b"There is nothing to share yet" in response.content
    assert not Share.objects.exists()
