"""The `cdc` command: thin entry points that parse, ask :mod:`cdc.bootstrap` for their parts, call, report.

``parser`` declares every subcommand; ``main`` loads the settings and dispatches; ``run`` holds the
long-running `cdc demo` and `cdc run`; ``events``, ``dlq`` and ``status`` the short ones.
"""

from cdc.cli.main import main

__all__ = ["main"]
