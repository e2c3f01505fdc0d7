#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

import os
import sys

from django.core.management import execute_from_command_line

from gptoss_web.env import configuration_errors_exit


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")
    with configuration_errors_exit():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
