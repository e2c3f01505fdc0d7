from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.sessions.models import Session
        from django.db.models.signals import post_delete, post_save

        from chat import events

        # Open sockets close as soon as their session ends, not only at the watcher's next round.
        post_delete.connect(events.session_deleted, sender=Session, dispatch_uid="chat.session_deleted")
        post_save.connect(events.user_saved, sender=get_user_model(), dispatch_uid="chat.user_saved")
