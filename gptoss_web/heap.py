"""Garbage collection in the long-lived processes (Daphne, the GPU worker): what startup built is frozen.

After startup a process holds a few hundred thousand objects that live as long as it does (modules, URL
patterns, the ORM's metadata, the engine's tables). CPython's full collection walks every one of them: on
the 2-core bench machine it took 50-110 ms, about every 10 s under load, and the process did nothing else
meanwhile: a send, a stream's next text or a socket's frames waited that long. `gc.freeze()` moves them to a
permanent generation that collections skip, so a full collection walks only what was made since.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_objects() -> None:
    """Collect once, then leave every object that is left out of all later collections."""
    gc.collect()  # startup's garbage is freed first, not kept forever
    gc.freeze()
    logger.info("%d objects of startup left out of garbage collection", gc.get_freeze_count())
