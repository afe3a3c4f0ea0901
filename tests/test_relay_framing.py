"""The relay's per-line work: which lines answer which request, and one write per chunk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp_types as types
from hypothesis import given
from hypothesis import strategies as st

from memvid_mcp.client.relay import NOT_AN_ANSWER, Relay, answer_id
from memvid_mcp.core.rundir import RunDir

ids = st.one_of(st.integers(min_value=-(2**53), max_value=2**53), st.text(max_size=12))
params = st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=8)),
                         max_size=3)


def slow_answer_id(line: bytes) -> Any:
    """The relay's old rule: parse the whole line."""
    try:
        message = json.loads(line)
    except ValueError:
        return NOT_AN_ANSWER
    if isinstance(message, dict) and "id" in message and "method" not in message:
        return message["id"]
    return NOT_AN_ANSWER


@st.composite
def sdk_lines(draw: st.DrawFn) -> bytes:
    """A line exactly as the service's MCP session writes it (``mcp/stream.py``)."""
    kind = draw(st.sampled_from(["result", "error", "request", "notification"]))
    request_id = draw(ids)
    message: Any
    if kind == "result":
        message = types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=draw(params))
    elif kind == "error":
        message = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(
            code=draw(st.integers(-33000, 0)), message=draw(st.text(max_size=20))))
    elif kind == "request":
        message = types.JSONRPCRequest(jsonrpc="2.0", id=request_id, method="ping")
    else:
        message = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/message",
                                            params=draw(params))
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode("utf-8")


@st.composite
def other_lines(draw: st.DrawFn) -> bytes:
    """Any other spelling of a JSON-RPC message (key order, spaces, escapes), or junk."""
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if draw(st.booleans()):
        message["id"] = draw(st.one_of(ids, st.floats(allow_nan=False), st.none()))
    message[draw(st.sampled_from(["result", "error", "method"]))] = draw(params)
    keys = draw(st.permutations(list(message)))
    text = json.dumps({k: message[k] for k in keys}, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    junk = draw(st.sampled_from(["", "", "", "}", "{"]))
    return (text + junk).encode("utf-8")


@given(st.one_of(sdk_lines(), other_lines()))
def test_answer_id_agrees_with_parsing_the_whole_line(line: bytes) -> None:
    """On every line that is JSON (all the service writes) the fast read agrees with a full
    parse. A line that is not JSON reaches the client unparsed either way, so there the fast
    read only has to answer (hypothesis found `{"id":0,...}}` read as answer 0)."""
    fast = answer_id(line)
    try:
        json.loads(line)
    except ValueError:
        assert fast is NOT_AN_ANSWER or isinstance(fast, int | str)
        return
    assert fast == slow_answer_id(line) or (
        fast is NOT_AN_ANSWER and slow_answer_id(line) is NOT_AN_ANSWER)


def test_an_answer_with_a_string_id_keeps_its_type() -> None:
    assert answer_id(b'{"jsonrpc":"2.0","id":"7","result":{}}') == "7"
    assert answer_id(b'{"jsonrpc":"2.0","id":7,"result":{}}') == 7
    assert answer_id(b'{"jsonrpc":"2.0","id":7,"method":"ping"}') is NOT_AN_ANSWER


class RecordingRelay(Relay):
    def __init__(self, tmp: Path) -> None:
        super().__init__(RunDir(tmp, tmp / "data"), None)
        self.writes: list[bytes] = []

    def _write_client(self, data: bytes) -> None:
        self.writes.append(data)


def test_answers_arriving_together_leave_in_one_write(tmp_path: Path) -> None:
    relay = RecordingRelay(tmp_path)
    relay.pending = {1: "tools/call", 2: "tools/call", "three": "ping"}
    relay.swallow = {9}  # a replayed initialize whose second answer the client must not see
    first = b'{"jsonrpc":"2.0","id":1,"result":{}}\n'
    second = b'{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}\n'
    swallowed = b'{"jsonrpc":"2.0","id":9,"result":{}}\n'
    note = b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}\n'
    third = b'{"jsonrpc":"2.0","id":"three","result":{}}\n'
    relay._from_service(first + swallowed + second + note + third[:10])
    assert relay.writes == [first + second + note]
    assert relay.pending == {"three": "ping"} and relay.swallow == set()
    relay._from_service(third[10:])
    assert relay.writes[1:] == [third] and relay.pending == {}
