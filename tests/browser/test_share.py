"""Import a ChatGPT export, share one of its conversations, and a colleague reads and continues it, on a
laptop and on a phone; nothing in the imported or shared text ever runs."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Share
from tests.browser.chat_page import ChatPage, fits_the_width
from tests.browser.test_reading import VIEWS, open_user_menu
from tests.chat.transfer_fixtures import chatgpt_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=list(VIEWS))
def view(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(VIEWS[request.param])


def _nothing_ran(page: Any) -> None:
    assert page.evaluate("() => window.__xss") == 0
    assert page.dialogs == []
    thread = page.locator("#thread")
    expect(thread.locator("script, img, iframe, svg, [onerror], [onload]")).to_have_count(0)


def _upload(page: Any, data: bytes, name: str = "conversations.json") -> None:
    page.set_input_files(
        "input[type=file]", files=[{"name": name, "mimeType": "application/json", "buffer": data}]
    )
    page.get_by_role("button", name="Import", exact=True).click()


def test_import_share_read_continue_and_revoke(
    user_page: Any, alice_user: Any, bob_user: Any, view: dict[str, Any]
) -> None:
    page = user_page(alice_user, **view)
    open_user_menu(page)
    page.get_by_role("link", name="Import & export").click()
    page.wait_for_url("**/settings/data/")
    expect(page.get_by_test_id("import-caps")).to_contain_text(
        "At most 50 MB a file (unpacked, for a zip), 2,000 conversations and 20,000 messages."
    )

    # A damaged file is named, and nothing of it is imported.
    _upload(page, chatgpt_bytes().replace(b'"And this beach?"', b"17"))
    expect(page.get_by_test_id("import-error")).to_have_text(
        "conversations.json: conversation 1, message 'u2': content is not text"
    )
    assert not Conversation.objects.filter(owner=alice_user).exists()

    _upload(page, chatgpt_bytes())
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(page.locator(".flash")).to_contain_text("Imported 2 conversations (7 messages) from ChatGPT.")
    expect(page.locator(".flash")).to_contain_text("images and files")
    thread = page.locator("#thread")
    expect(thread).to_contain_text("It is low tide.")
    expect(thread).to_contain_text('<img src=x onerror="window.__xss++"> <script>window.__xss++</script>')
    ChatPage(page).wait_connected()  # a live conversation like any other (the socket's state rendered too)
    _nothing_ran(page)
    tides = Conversation.objects.get(owner=alice_user, title="Tides")
    assert page.url.endswith(f"/c/{tides.pk}/")

    # Share it; the link shows in the Share menu.
    page.locator("[data-testid=share-panel] > summary").click()
    page.get_by_role("button", name="Create link").click()
    page.wait_for_url("**/?shared=1")
    share = Share.objects.get()
    link = page.locator(".share-link code")
    expect(link).to_be_visible()
    url = link.inner_text()
    assert url.endswith(f"/s/{share.token}/")
    expect(page.locator(".flash")).to_contain_text("Link created")
    # The flash names the link; a token without a place to break (as long as any) still wraps on a phone:
    # a page wider than the screen is zoomed out, and taps then land beside what they aim at.
    page.locator(".flash .alert").evaluate("(alert) => { alert.textContent += ' ' + 'Ug'.repeat(60); }")
    assert fits_the_width(page)

    # A colleague reads the snapshot and continues it as a conversation of their own.
    reader = user_page(bob_user, **view)
    response = reader.goto(url)
    assert response is not None and response.status == 200
    expect(reader.get_by_test_id("share-note")).to_contain_text("Shared by alice")
    expect(reader.locator("#thread article.message")).to_have_count(4)
    expect(reader.locator("#thread")).to_contain_text("<script>window.__xss++</script>")
    _nothing_ran(reader)
    assert f"/c/{tides.pk}/" not in reader.content()
    reader.get_by_test_id("continue").click()
    reader.wait_for_url(re.compile(r"/c/\d+/$"))
    copy = Conversation.objects.get(owner=bob_user)
    assert reader.url.endswith(f"/c/{copy.pk}/")
    expect(reader.locator(".flash")).to_contain_text("This is your own copy of “Tides”, shared by alice")
    ChatPage(reader).wait_connected()
    expect(reader.locator("#thread article.message")).to_have_count(4)
    _nothing_ran(reader)

    # The owner revokes it from Shared links: the link leads nowhere, the copy stays the reader's.
    page.locator("[data-testid=share-panel] > summary").click()
    open_user_menu(page)
    page.get_by_role("link", name="Shared links").click()
    page.wait_for_url("**/settings/shares/")
    page.get_by_role("button", name="Revoke the link to Tides").click()
    expect(page.get_by_test_id("share-list")).to_contain_text("Revoked")
    response = reader.goto(url)
    assert response is not None and response.status == 404
    assert reader.goto(f"/c/{copy.pk}/").status == 200  # type: ignore[union-attr]
    assert reader.goto(f"/c/{tides.pk}/export.json").status == 404  # type: ignore[union-attr]


def test_export_downloads_through_daphne(user_page: Any, alice_user: Any) -> None:
    """The account's zip, streamed by Daphne, and one conversation's Markdown, as a browser downloads them."""
    page = user_page(alice_user)
    open_user_menu(page)
    page.get_by_role("link", name="Import & export").click()
    _upload(page, chatgpt_bytes())
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    page.locator("[data-testid=share-panel] > summary").click()
    with page.expect_download() as markdown:
        page.get_by_role("link", name="Markdown").click()
    assert markdown.value.suggested_filename == "tides.md"
    assert markdown.value.path().read_text().startswith("# Tides\n")

    page.goto("/settings/data/")
    with page.expect_download() as archive:
        page.get_by_test_id("export-all").click()
    assert archive.value.suggested_filename == "gptoss-web-alice.zip"
    names = zipfile.ZipFile(io.BytesIO(archive.value.path().read_bytes())).namelist()
    assert sum(name.endswith(".json") and "/conversations/" in name for name in names) == 2
