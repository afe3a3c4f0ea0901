"""Decide, without importing click, whether a ``memvid-mcp`` launch is an MCP stdio launch.

MCP clients start ``memvid-mcp`` (optionally with global options and ``serve``): that process
becomes a relay to the data directory's service. Anything else is a CLI command and goes to
the click CLI. ``MEMVID_SERVICE=0`` (or ``--read-only``) keeps the single-process server.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

VALUE_OPTIONS = {"--data-dir", "--backend", "--project", "--scope"}
FLAG_OPTIONS = {"-v", "-vv", "--verbose", "--json"}


def parse_stdio_launch(argv: list[str]) -> dict[str, str] | None:
    """The global options of a stdio launch, or None when argv is anything else."""
    options: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in VALUE_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                value = argv[i + 1]
                i += 1
            options[name[2:].replace("-", "_")] = value
        elif arg in FLAG_OPTIONS:
            pass
        else:
            rest.append(arg)
        i += 1
    if rest in ([], ["serve"], ["serve", "--transport", "stdio"], ["serve", "--transport=stdio"]):
        return options
    return None


def data_dir_from(argv: list[str], options: dict[str, str] | None = None) -> Path:
    """The data directory a launch names (--data-dir, MEMVID_DATA_DIR, the default)."""
    value = (options or {}).get("data_dir")
    for i, arg in enumerate(argv):
        if arg == "--data-dir" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--data-dir="):
            value = arg.partition("=")[2]
    value = value or os.environ.get("MEMVID_DATA_DIR")
    if not value:
        from ..core.config import default_data_dir

        return default_data_dir()
    return Path(value).expanduser()


def service_enabled() -> bool:
    return os.environ.get("MEMVID_SERVICE", "1").strip().lower() not in ("0", "false", "no",
                                                                        "off")


def run_relay(options: dict[str, str]) -> int:
    """Relay stdio to the service of the launch's data directory (starting it if needed)."""
    from ..core.errors import MemvidError
    from ..core.rundir import RunDir
    from .relay import Relay

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="memvid-mcp relay: %(message)s")
    if "backend" in options:  # the service this launch may start inherits the environment
        os.environ["MEMVID_BACKEND"] = options["backend"]
    try:
        from ..core.config import check_chosen_data_dir, default_data_dir

        data_dir = data_dir_from([], options)
        if data_dir != default_data_dir():  # named by the user: a typo must not mkdir -p
            check_chosen_data_dir(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        project = options.get("project") or os.environ.get("MEMVID_PROJECT") or os.getcwd()
        run = RunDir.for_data_dir(data_dir)
        return Relay(run, os.path.abspath(os.path.expanduser(project))).serve()
    except MemvidError as exc:
        sys.stderr.write(f"memvid-mcp: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
