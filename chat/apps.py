from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Django's idiom: the receivers module imports models, which exist only once the apps are ready.
        from chat import receivers  # noqa: F401, PLC0415
