"""``python -m memvid_mcp.service --data-dir PATH``: what a relay starts (detached)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..core.config import Settings
from ..core.errors import MemvidError
from .daemon import run_service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memvid-mcp-service")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--idle", type=float, default=None,
                        help="seconds without clients before exiting (MEMVID_SERVICE_IDLE)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(data_dir=args.data_dir)
        return run_service(settings, idle_seconds=args.idle)
    except MemvidError as exc:
        logging.getLogger("memvid_mcp.service").error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
