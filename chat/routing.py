from __future__ import annotations

from django.urls import path

from chat.consumers import ConversationConsumer

websocket_urlpatterns = [
    path("ws/conversations/<int:conversation_id>/", ConversationConsumer.as_asgi()),
    # The start page's socket: its first message starts the conversation (and the socket follows it).
    path("ws/conversations/new/", ConversationConsumer.as_asgi()),
]
