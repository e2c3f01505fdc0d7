"""ASGI entry point: HTTP goes to Django, WebSockets to the chat consumers (same-origin, session auth).

Both see the client's real address (gptoss_web/client_ip.py), which the access log shows.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

from gptoss_web.env import configuration_errors_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")
with configuration_errors_exit():  # Daphne would print the import's whole traceback
    django_asgi_app = get_asgi_application()

# Django must be set up before these imports.
from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings

from chat.consumers import MAX_FRAME_BYTES
from chat.routing import websocket_urlpatterns
from gptoss_web.client_ip import ClientAddressMiddleware
from gptoss_web.heap import freeze_startup_objects


def _close_oversized_frames_with_1009() -> None:
    """Make Daphne answer a frame above MAX_FRAME_BYTES with a close frame: code 1009 and a reason.

    Daphne refuses frames above 1 MiB through autobahn, which by default fails a connection by dropping TCP
    (`failByDrop`): the browser saw neither a code nor a reason. Daphne has no setting for either, and it
    reads this module before it builds its WebSocket factory, so the factory it builds is this one.
    """
    # Here, not at the top: daphne.server installs Twisted's asyncio reactor when imported, which only a
    # Daphne process (which calls this) may do; tests and other servers import this module too.
    import daphne.server  # noqa: PLC0415

    class WebSocketFactory(daphne.server.WebSocketFactory):
        def setProtocolOptions(self, **options: Any) -> None:
            options.update(
                failByDrop=False, maxMessagePayloadSize=MAX_FRAME_BYTES, maxFramePayloadSize=MAX_FRAME_BYTES
            )
            super().setProtocolOptions(**options)

    daphne.server.WebSocketFactory = WebSocketFactory


_close_oversized_frames_with_1009()
application = ClientAddressMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    ),
    settings.GPTOSS_TRUSTED_PROXIES,
)
freeze_startup_objects()  # last: everything startup built stays out of the collections
