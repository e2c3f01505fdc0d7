"""What /healthz checks: the database, Redis, and at least one ready GPU worker per enabled model."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection

from inference.selectors import worker_board
from inference.status import redis_client

logger = logging.getLogger(__name__)


def check(*, workers: bool = True) -> dict[str, Any]:
    """Return {"status": "ok"|"fail", "checks": {name: "ok" | what is wrong}}."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:
        logger.warning("healthz: database: %s", error)
        checks["database"] = f"unreachable: {type(error).__name__}"
    try:
        redis_client().ping()
        checks["redis"] = "ok"
    except Exception as error:
        logger.warning("healthz: redis: %s", error)
        checks["redis"] = f"unreachable: {type(error).__name__}"
    if workers and checks["database"] == "ok" and checks["redis"] == "ok":
        _, serving = worker_board()
        for model in serving:
            if model.workers_ready:
                checks[f"model:{model.name}"] = "ok"
            else:
                waiting = "".join(f"; waiting: {w}" for w in model.workers_waiting)
                checks[f"model:{model.name}"] = (
                    f"no ready worker ({model.workers_up} up) on queue {model.queue}{waiting}"
                )
    status = "ok" if all(value == "ok" for value in checks.values()) else "fail"
    return {"status": status, "checks": checks}
