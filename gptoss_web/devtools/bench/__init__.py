"""`make bench`: `python -m gptoss_web.devtools.bench engine pipeline` (and `sockets`)."""
