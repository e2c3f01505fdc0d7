"""The GPU this worker runs on, through NVML (nvidia-ml-py) when a driver is present; None elsewhere."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import pynvml  # nvidia-ml-py, a dependency; without a driver nvmlInit fails and the worker has no GPU

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict[str, Any] = {"tried": False, "handle": None}


def _handle() -> Any:
    """Return the NVML handle of the first GPU this process sees (CUDA_VISIBLE_DEVICES), or None."""
    with _lock:
        if _state["tried"]:
            return _state["handle"]
        _state["tried"] = True
        try:
            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
            if visible.isdigit():
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible))
            else:  # a UUID such as GPU-8f3c...
                handle = pynvml.nvmlDeviceGetHandleByUUID(visible)
            _state["handle"] = handle
        except Exception as error:  # no package, no driver, no GPU: a CPU worker
            logger.info("no GPU status (NVML: %s)", error)
        return _state["handle"]


def gpu_status() -> dict[str, Any] | None:
    """Return {name, memory_used, memory_total, utilization} of this worker's GPU, or None without one."""
    handle = _handle()
    if handle is None:
        return None
    try:
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except Exception as error:
        logger.warning("NVML query failed: %s", error)
        return None
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_used": int(memory.used),
        "memory_total": int(memory.total),
        "utilization": int(utilization),
    }
