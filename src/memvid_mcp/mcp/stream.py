"""One MCP session over any byte stream: newline-delimited JSON-RPC, as MCP's stdio.

The service accepts relays on a local socket and runs each connection through this; it is the
SDK's stdio transport with the socket in place of the process's stdin and stdout.
"""

from __future__ import annotations

import anyio
import anyio.abc
import mcp_types as types
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp.server import MCPServer
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage

from ..core import hops

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # twice the HTTP transport's body cap


async def serve_stream(server: MCPServer, reader: BufferedByteReceiveStream,
                       writer: anyio.abc.ByteSendStream) -> None:
    """Serve until the peer closes its side (or sends an over-long line)."""
    read_send, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_receive = create_context_streams[SessionMessage](0)

    async def read_lines() -> None:
        async with read_send:
            while True:
                try:
                    line = await reader.receive_until(b"\n", MAX_MESSAGE_BYTES)
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError,
                        anyio.ClosedResourceError, anyio.DelimiterNotFound):
                    return
                hops.mark("service.read")
                if not line.strip():
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:  # the SDK answers a parse error for it
                    await read_send.send(exc)
                    continue
                hops.mark("service.parsed")
                await read_send.send(SessionMessage(message))

    async def write_lines() -> None:
        async with write_receive:
            async for session_message in write_receive:
                hops.mark("service.reply")
                data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    await writer.send(data.encode("utf-8") + b"\n")
                    hops.mark("service.sent")
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

    lowlevel = server._lowlevel_server
    async with anyio.create_task_group() as group:
        group.start_soon(read_lines)
        group.start_soon(write_lines)
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
        group.cancel_scope.cancel()
