"""`manage.py reaper`: keep watch on the GPU workers and the queue, so that no reply is stranded."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from inference.status import HEARTBEAT_EVERY_S
from inference.worker.reaper import Reaper

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Mark replies whose GPU worker died or lost them as interrupted, and send queued replies that have "
        "no task to their workers again (runs until stopped)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="check once and exit")

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        reaper = Reaper()
        self.stdout.write(f"reaper watching GPU worker heartbeats every {HEARTBEAT_EVERY_S:g} s")
        while True:
            try:
                reaper.run_once()
            except (redis.RedisError, DatabaseError) as error:
                # Redis or PostgreSQL restarting: try again at the next round.
                logger.warning("reaper round skipped: %s", error)
                close_old_connections()
            if once:
                return
            time.sleep(HEARTBEAT_EVERY_S)
