"""The GPU worker process (Celery): the reply task, its engine, heartbeat, stop listener and dependency watch,
and the reaper process that leaves no reply stranded. The web side never imports this package."""
