"""Operations pages: the staff-only GPU worker dashboard (HTML and JSON) and /healthz for monitoring."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from inference import health, selectors
from inference.status import HEARTBEAT_TTL_S

logger = logging.getLogger(__name__)


def _board_json() -> dict[str, Any]:
    rows, serving = selectors.worker_board()
    return {
        "workers": [
            {**asdict(row.status), "up": row.up, "seconds_since": round(row.seconds_since, 1)} for row in rows
        ],
        "models": [asdict(model) for model in serving],
    }


@require_GET
@never_cache
@staff_member_required
def workers_dashboard(request: HttpRequest) -> HttpResponse:
    """Show every GPU worker (up or down), what it serves and how busy it is; refreshed live by JS."""
    rows, serving = selectors.worker_board()
    context = {"rows": rows, "serving": serving, "ttl": HEARTBEAT_TTL_S}
    return render(request, "inference/workers.html", context)


@require_GET
@never_cache
@staff_member_required
def workers_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_board_json())


def _may_see_health_details(request: HttpRequest) -> bool:
    """Whether *request* comes from staff, a monitoring network or a holder of the monitoring token."""
    if request.user.is_authenticated and request.user.is_staff:
        return True
    token = settings.GPTOSS_HEALTHZ_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in settings.GPTOSS_HEALTHZ_NETWORKS)


@require_safe  # monitors often probe with HEAD
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """Answer 200 when the database, Redis and a ready worker per enabled model are there, else 503.

    `?scope=web` checks only the database and Redis: for a load balancer in front of the web processes,
    which should keep serving pages while a GPU worker restarts. Which check failed (and so the models
    and queues served) is told only to staff, GPTOSS_HEALTHZ_NETWORKS and GPTOSS_HEALTHZ_TOKEN holders;
    anyone else gets the status alone, with the same HTTP status code.
    """
    report = health.check(workers=request.GET.get("scope") != "web")
    code = 200 if report["status"] == "ok" else 503
    if not _may_see_health_details(request):
        return JsonResponse({"status": report["status"]}, status=code)
    return JsonResponse(report, status=code)
