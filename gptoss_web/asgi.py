"""ASGI entry point: HTTP goes to Django, WebSockets to the chat consumers (same-origin, session auth)."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (Django must be set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.consumers import MAX_FRAME_BYTES  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402


def _close_oversized_frames_with_1009() -> None:
    """Make Daphne answer a frame above MAX_FRAME_BYTES with a close frame: code 1009 and a reason.

    Daphne refuses frames above 1 MiB through autobahn, which by default fails a connection by dropping TCP
    (`failByDrop`): the browser saw neither a code nor a reason. Daphne has no setting for either, and it
    reads this module before it builds its WebSocket factory, so the factory it builds is this one.
    """
    import daphne.server

    class WebSocketFactory(daphne.server.WebSocketFactory):
        def setProtocolOptions(self, **options: Any) -> None:
            options.update(
                failByDrop=False, maxMessagePayloadSize=MAX_FRAME_BYTES, maxFramePayloadSize=MAX_FRAME_BYTES
            )
            super().setProtocolOptions(**options)

    daphne.server.WebSocketFactory = WebSocketFactory


_close_oversized_frames_with_1009()
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
