"""What the HTTP tests share: a real uvicorn server on a free loopback port, a real
``memvid-mcp serve --transport http`` process, and the raw initialize request with the
headers streamable HTTP needs."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import uvicorn

INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "raw", "version": "0"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a port the OS picks; yield the MCP endpoint URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections queue here until uvicorn accepts: no start-up polling
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=2))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}/mcp"
            finally:
                server.should_exit = True
    sock.close()


@contextmanager
def serve_process(data_dir: Path, *args: str, cwd: Path
                  ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``memvid-mcp serve --transport http --port 0 ARGS`` (through the service, embeddings
    off); yields the process and the first line it writes to stderr (where it listens).
    Killed on the way out if still running."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MEMVID_") or k in ("MEMVID_RUN_DIR", "MEMVID_SERVICE_IDLE")}
    env["MEMVID_EMBEDDINGS"] = "0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "memvid_mcp", "--data-dir", str(data_dir), "serve",
         "--transport", "http", "--port", "0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: [lines.put(raw.decode()) for raw in stderr], daemon=True
                     ).start()
    try:
        yield proc, lines.get(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
