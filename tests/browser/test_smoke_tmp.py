import time
import pytest
from chat.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

def test_smoke(user_page, alice_user):
    page = user_page(alice_user)
    page.fill("textarea[name=text]", "Hello there")
    page.keyboard.press("Enter")
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("article.message-assistant")
    for _ in range(50):
        if Message.objects.filter(role="assistant", status="done").exists():
            break
        time.sleep(0.2)
    page.reload()
    page.wait_for_timeout(1000)
    print(page.evaluate("window.gptossChat && window.gptossChat.messages()"))
    print(page.inner_text("#thread"))
    page.screenshot(path="/tmp/shots/smoke.png")
