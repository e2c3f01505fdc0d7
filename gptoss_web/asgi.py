"""ASGI entry point: HTTP goes to Django, WebSockets to the chat consumers (same-origin, session auth).

Both see the client's real address (gptoss_web/client_ip.py), which the access log shows.
"""

from __future__ import annotations

import os

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

from chat.routing import websocket_urlpatterns
from gptoss_web.client_ip import ClientAddressMiddleware

application = ClientAddressMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    ),
    settings.GPTOSS_TRUSTED_PROXIES,
)
