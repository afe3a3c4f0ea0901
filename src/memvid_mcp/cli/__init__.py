"""The human command line: thin over the manager (or the service).

``main`` looks at the arguments before importing click: a plain stdio launch (what MCP client
configs run) becomes a relay to the per-user service and starts in a few tens of milliseconds.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from ..client.launch import parse_stdio_launch, run_relay, service_enabled

    args = sys.argv[1:] if argv is None else argv
    options = parse_stdio_launch(args)
    if options is not None and service_enabled():
        sys.exit(run_relay(options))
    from .remote import try_remote

    code = try_remote(args)
    if code is not None:
        sys.exit(code)
    from .main import main as click_main

    click_main(args)


__all__ = ["main"]
