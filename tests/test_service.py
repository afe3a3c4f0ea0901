"""The per-user service and the stdio relay, through real processes and real sockets.

Each test launches ``memvid-mcp`` exactly as an MCP client config does (stdin/stdout pipes)
on its own data directory and run directory; the relay starts the service on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memvid_mcp import __version__
from memvid_mcp.client.stdio_peer import StdioPeer
from memvid_mcp.client.stdio_peer import structured as _structured
from memvid_mcp.core import hops
from memvid_mcp.core.errors import ServiceError
from memvid_mcp.core.rundir import RunDir

pytestmark = pytest.mark.timeout(180)
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def env(tmp_path: Path, outside_repo: Path) -> Iterator[dict[str, str]]:
    run = tempfile.mkdtemp(prefix="mvs-")  # short: socket paths have at most 107 bytes
    values = dict(os.environ, MEMVID_DATA_DIR=str(tmp_path / "data"), MEMVID_RUN_DIR=run,
                  MEMVID_EMBEDDINGS="0", MEMVID_SERVICE_IDLE="30", PYTHONPATH=str(SRC))
    values.pop("MEMVID_SERVICE", None)
    yield values
    for pid in _service_pids(values):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(run, ignore_errors=True)


def _wait_until_gone(env: dict[str, str], pid: int | None = None, seconds: float = 20) -> None:
    """Until the service ``pid`` (or every service of this data directory) has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = _service_pids(env)
        if (pid not in pids) if pid is not None else not pids:
            return
        time.sleep(0.05)


def _service_pids(env: dict[str, str]) -> list[int]:
    """Live service processes of this test's data directory (from /proc, not from us)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if state != "Z" and b"service" in cmdline and \
                env["MEMVID_DATA_DIR"].encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def Client(env: dict[str, str], cwd: Path, name: str = "test") -> StdioPeer:
    """A relay launched as an MCP client config launches it."""
    return StdioPeer([sys.executable, "-m", "memvid_mcp"], env=env, cwd=cwd, name=name)


def test_relays_share_one_service_and_every_write_lands(env: dict[str, str],
                                                        outside_repo: Path) -> None:
    clients = [Client(env, outside_repo, f"c{i}") for i in range(3)]
    stored: dict[str, str] = {}
    errors: list[str] = []

    def work(index: int, client: Client) -> None:
        for n in range(15):
            text = f"note {n} from client {index}: the deploy window is {n} o'clock"
            reply = client.tool("memory_store", text=text)
            if "error" in reply or reply["result"].get("isError"):
                errors.append(json.dumps(reply))
                continue
            stored[_structured(reply)["id"]] = text

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(stored) == 45
    assert len(_service_pids(env)) == 1
    assert [c.close() for c in clients] == [0, 0, 0]

    fresh = Client(env, outside_repo, "reader")
    got = _structured(fresh.tool("memory_get", ids=list(stored), max_chars=200_000))
    assert {m["id"]: m["text"] for m in got["memories"]} == stored
    fresh.close()


def test_two_relays_at_the_same_instant_start_one_service(env: dict[str, str],
                                                          outside_repo: Path) -> None:
    barrier = threading.Barrier(4)
    clients: list[Client] = []

    def launch() -> None:
        barrier.wait()
        clients.append(Client(env, outside_repo))

    threads = [threading.Thread(target=launch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients) == 4
    assert all(c.initialize_reply["result"]["serverInfo"]["name"] == "memvid-mcp"
               for c in clients)
    assert len(_service_pids(env)) == 1
    for client in clients:
        client.close()


def test_cli_works_during_a_session_through_the_service(env: dict[str, str],
                                                        outside_repo: Path) -> None:
    client = Client(env, outside_repo)
    _structured(client.tool("memory_store", text="stored by the agent about kubernetes"))
    cli = [sys.executable, "-m", "memvid_mcp", "--json"]
    done = subprocess.run([*cli, "store", "stored by the hook about terraform"], env=env,
                          cwd=outside_repo, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    hook_id = json.loads(done.stdout)["id"]
    found = subprocess.run([*cli, "search", "kubernetes"], env=env, cwd=outside_repo,
                           capture_output=True, text=True, timeout=30)
    assert found.returncode == 0, found.stderr
    assert "agent about kubernetes" in found.stdout
    seen = _structured(client.tool("memory_get", ids=[hook_id]))
    assert seen["memories"][0]["text"] == "stored by the hook about terraform"
    bad = subprocess.run([*cli, "search", ""], env=env, cwd=outside_repo,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.startswith("memvid-mcp: error: ")
    client.close()


def test_service_killed_mid_session_loses_nothing(env: dict[str, str],
                                                  outside_repo: Path) -> None:
    client = Client(env, outside_repo)
    ids = [_structured(client.tool("memory_store", text=f"before the crash {n}"))["id"]
           for n in range(5)]
    (pid,) = _service_pids(env)
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    reply = client.tool("memory_store", text="after the crash")
    if "error" in reply:  # the one retryable error a call in flight may see
        assert "retry" in reply["error"]["message"]
        reply = client.tool("memory_store", text="after the crash")
    assert time.monotonic() - started < 10
    ids.append(_structured(reply)["id"])
    got = _structured(client.tool("memory_get", ids=ids))
    assert len(got["memories"]) == 6 and got["missing"] == []
    new_pids = _service_pids(env)
    assert len(new_pids) == 1 and new_pids[0] != pid
    assert client.close() == 0


def test_an_older_service_is_replaced_by_a_newer_relay(env: dict[str, str],
                                                       outside_repo: Path,
                                                       tmp_path: Path) -> None:
    old_src = tmp_path / "old-src"
    shutil.copytree(SRC / "memvid_mcp", old_src / "memvid_mcp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = old_src / "memvid_mcp" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"',
                                             '__version__ = "0.0.1"'))
    old_env = dict(env, PYTHONPATH=str(old_src))
    old = Client(old_env, outside_repo, "old")
    assert old.initialize_reply["result"]["serverInfo"]["version"] == "0.0.1"
    first = _structured(old.tool("memory_store", text="written through the old service"))
    (old_pid,) = _service_pids(env)

    new = Client(dict(env, PYTHONPATH=str(SRC)), outside_repo, "new")
    assert new.initialize_reply["result"]["serverInfo"]["version"] == __version__
    _wait_until_gone(env, old_pid, seconds=20)  # it released the data before its process ended
    (new_pid,) = _service_pids(env)
    assert new_pid != old_pid
    got = _structured(new.tool("memory_get", ids=[first["id"]]))
    assert got["memories"][0]["text"] == "written through the old service"

    reply = old.tool("memory_search", query="old service")  # the old relay carries on
    if "error" in reply:
        reply = old.tool("memory_search", query="old service")
    assert _structured(reply)["results"]
    old.close()
    new.close()


def test_service_exits_when_idle_and_leaves_nothing(env: dict[str, str], outside_repo: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMVID_RUN_DIR", env["MEMVID_RUN_DIR"])
    env = dict(env, MEMVID_SERVICE_IDLE="1")
    client = Client(env, outside_repo)
    _structured(client.tool("memory_store", text="kept after the idle exit"))
    assert len(_service_pids(env)) == 1
    client.close()
    _wait_until_gone(env, seconds=20)
    assert _service_pids(env) == []
    run = RunDir.for_data_dir(Path(env["MEMVID_DATA_DIR"]))
    assert not run.socket.exists()
    again = Client(env, outside_repo)  # and the data is all there for the next one
    found = _structured(again.tool("memory_search", query="idle exit"))
    assert found["results"][0]["snippet"].startswith("kept after")
    again.close()


def test_sigterm_flushes_and_exits(env: dict[str, str], outside_repo: Path) -> None:
    client = Client(env, outside_repo)
    stored = _structured(client.tool("memory_store", text="flushed on SIGTERM"))
    (pid,) = _service_pids(env)
    os.kill(pid, signal.SIGTERM)
    _wait_until_gone(env, pid, seconds=30)
    assert pid not in _service_pids(env)
    bodies = list((Path(env["MEMVID_DATA_DIR"]) / "global").rglob("*.mvb"))
    assert len(bodies) == 1  # sealed into storage before it exited, not left in the WAL
    got = _structured(client.tool("memory_get", ids=[stored["id"]]))  # a new service
    assert got["memories"][0]["text"] == "flushed on SIGTERM"
    assert client.close() == 0


def test_service_off_keeps_the_single_process_server(env: dict[str, str],
                                                     outside_repo: Path) -> None:
    client = Client(dict(env, MEMVID_SERVICE="0"), outside_repo)
    _structured(client.tool("memory_store", text="no service here"))
    assert _service_pids(env) == []
    client.close()


def test_tcp_fallback_needs_the_token(env: dict[str, str], outside_repo: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMVID_RUN_DIR", env["MEMVID_RUN_DIR"])
    env = dict(env, MEMVID_SERVICE_TRANSPORT="tcp")
    client = Client(env, outside_repo)
    _structured(client.tool("memory_store", text="over loopback tcp"))
    run = RunDir.for_data_dir(Path(env["MEMVID_DATA_DIR"]))
    assert run.address_file.stat().st_mode & 0o777 == 0o600
    port = int(run.address_file.read_text().split()[0])
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(json.dumps({"memvid": 1, "version": __version__, "role": "mcp",
                                 "token": "wrong"}).encode() + b"\n")
        reply = json.loads(sock.makefile("rb").readline())
    assert reply == {"ok": False, "code": "auth", "error": "wrong or missing token"}
    client.close()


def test_a_run_directory_of_another_user_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "run"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("MEMVID_RUN_DIR", str(base))
    run = RunDir.for_data_dir(tmp_path / "data")
    assert run.path.stat().st_mode & 0o777 == 0o700
    os.chmod(run.path, 0o755)
    with pytest.raises(ServiceError, match="lets other users in"):
        RunDir.for_data_dir(tmp_path / "data")
    os.chmod(run.path, 0o700)
    if os.getuid() == 0:  # root can give the directory away, as an attacker's would look
        os.chown(run.path, 65534, 65534)
        with pytest.raises(ServiceError, match="owned by uid 65534"):
            RunDir.for_data_dir(tmp_path / "data")
    link_target = tmp_path / "elsewhere"
    link_target.mkdir(mode=0o700)
    other = tmp_path / "data2"
    key_dir = RunDir.for_data_dir(other).path
    key_dir.rmdir()
    key_dir.symlink_to(link_target)
    with pytest.raises(ServiceError, match="not a directory"):
        RunDir.for_data_dir(other)


def test_each_session_has_its_own_project_and_they_share_global(env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    repos = []
    for name in ("alpha", "beta"):
        repo = tmp_path / name
        (repo / ".git").mkdir(parents=True)
        repos.append(repo)
    a, b = (Client(env, repo, repo.name) for repo in repos)
    ids = {}
    for client, name in ((a, "alpha"), (b, "beta")):
        ids[name] = _structured(client.tool("memory_store", text=f"{name} project note"))
        assert ids[name]["scope"] == "project"
        _structured(client.tool("memory_store", text=f"{name} global note", scope="global"))
    found_a = {r["snippet"] for r in
               _structured(a.tool("memory_search", query="project note"))["results"]}
    assert found_a == {"alpha project note", "alpha global note", "beta global note"}
    found_b = {r["snippet"] for r in
               _structured(b.tool("memory_search", query="global note"))["results"]}
    assert found_b == {"beta project note", "alpha global note", "beta global note"}
    assert _structured(a.tool("memory_get", ids=[ids["beta"]["id"]]))["missing"] == \
        [ids["beta"]["id"]]
    assert len(_service_pids(env)) == 1
    a.close()
    b.close()


def test_the_python_api_refuses_a_directory_a_service_owns(env: dict[str, str],
                                                           outside_repo: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from memvid_mcp import MemoryManager

    monkeypatch.setenv("MEMVID_RUN_DIR", env["MEMVID_RUN_DIR"])
    client = Client(env, outside_repo)
    _structured(client.tool("memory_store", text="owned by the service"))
    started = time.monotonic()
    with MemoryManager.open(env["MEMVID_DATA_DIR"], project=outside_repo,
                            embeddings=False) as manager, \
            pytest.raises(ServiceError, match="owns"):
        manager.store("opened behind the service's back")
    assert time.monotonic() - started < 5  # at once, not after a lock timeout
    cli = [sys.executable, "-m", "memvid_mcp", "--json", "service"]
    status = subprocess.run([*cli, "--status"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert json.loads(status.stdout)["running"] is True
    client.close()  # else its relay would start a new service after the stop
    stop = subprocess.run([*cli, "--stop"], env=env, capture_output=True, text=True, timeout=30)
    assert json.loads(stop.stdout) == {"stopped": True}
    _wait_until_gone(env, seconds=20)
    assert _service_pids(env) == []


def _http_rpc(url: str, message: dict[str, Any], session: str | None) -> tuple[Any, str | None]:
    import httpx

    headers = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json", "MCP-Protocol-Version": "2025-06-18"}
    if session:
        headers["Mcp-Session-Id"] = session
    reply = httpx.post(url, json=message, headers=headers, timeout=30)
    assert reply.status_code in (200, 202), reply.text
    body: Any = None
    if reply.text.strip():
        if reply.headers.get("content-type", "").startswith("text/event-stream"):
            data = [ln[5:].strip() for ln in reply.text.splitlines() if ln.startswith("data:")]
            body = json.loads([d for d in data if d][-1])
        else:
            body = reply.json()
    return body, reply.headers.get("mcp-session-id", session)


def test_http_and_stdio_clients_share_one_owner(env: dict[str, str], outside_repo: Path) -> None:
    import queue
    import re

    server = subprocess.Popen(
        [sys.executable, "-m", "memvid_mcp", "serve", "--transport", "http", "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        cwd=outside_repo)
    lines: queue.Queue[str] = queue.Queue()
    assert server.stderr is not None
    stderr = server.stderr
    threading.Thread(target=lambda: [lines.put(raw.decode()) for raw in stderr],
                     daemon=True).start()
    try:
        match = re.search(r"(http://127\.0\.0\.1:\d+/mcp)", lines.get(timeout=60))
        assert match
        url = match.group(1)
        stdio = Client(env, outside_repo)  # a relay: it finds the HTTP server's service
        stored = _structured(stdio.tool("memory_store", text="stored over stdio, read over http"))
        assert _service_pids(env) == []  # no service of its own: the HTTP one owns the data
        init, session = _http_rpc(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                        "params": {"protocolVersion": "2025-06-18",
                                                   "capabilities": {},
                                                   "clientInfo": {"name": "h", "version": "1"}}},
                                  None)
        assert init["result"]["serverInfo"]["name"] == "memvid-mcp"
        _http_rpc(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        got, _ = _http_rpc(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                 "params": {"name": "memory_get",
                                            "arguments": {"ids": [stored["id"]]}}}, session)
        memories = got["result"]["structuredContent"]["memories"]
        assert memories[0]["text"] == "stored over stdio, read over http"
        assert stdio.close() == 0
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_service_killed_mid_call_answers_retryably_and_keeps_the_session(
        env: dict[str, str], outside_repo: Path) -> None:
    client = Client(env, outside_repo)
    _structured(client.tool("memory_store", text="before"))
    (pid,) = _service_pids(env)
    big = "a large note about the incident review. " * 20_000  # ~800 KB: a call that takes a while
    assert client.proc.stdin is not None and client.proc.stdout is not None
    request = {"jsonrpc": "2.0", "id": 999, "method": "tools/call",
               "params": {"name": "memory_store", "arguments": {"text": big}}}
    client.proc.stdin.write(json.dumps(request).encode() + b"\n")
    client.proc.stdin.flush()
    time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    reply = json.loads(client.proc.stdout.readline())
    assert reply["id"] == 999
    if "error" in reply:  # it was in flight: one retryable error, then the retry works
        assert "retry" in reply["error"]["message"]
        reply = client.tool("memory_store", text=big)
    stored = _structured(reply)
    got = _structured(client.tool("memory_get", ids=[stored["id"]], max_chars=200_000))
    assert got["memories"][0]["text_chars"] == len(big)
    assert client.close() == 0


def test_cli_through_the_service_honours_project(env: dict[str, str], tmp_path: Path,
                                                 outside_repo: Path) -> None:
    repo = tmp_path / "gamma"
    (repo / ".git").mkdir(parents=True)
    client = Client(env, outside_repo)  # a service runs, started from outside any repo
    cli = [sys.executable, "-m", "memvid_mcp", "--json", "--project", str(repo)]
    stored = subprocess.run([*cli, "store", "a gamma project decision"], env=env,
                            cwd=outside_repo, capture_output=True, text=True, timeout=30)
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["scope"] == "project"
    client.close()


def test_a_script_that_closes_its_input_still_gets_every_answer(env: dict[str, str],
                                                                 outside_repo: Path) -> None:
    """`printf requests | memvid-mcp`: stdin ends right after the last request; every request
    is still answered before the relay exits (0.1.0's server dropped the ones in flight)."""
    lines = [{"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "script", "version": "1"}}},
             {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    lines += [{"jsonrpc": "2.0", "id": 2 + n, "method": "tools/call",
               "params": {"name": "memory_store", "arguments": {"text": f"piped note {n}"}}}
              for n in range(5)]
    done = subprocess.run([sys.executable, "-m", "memvid_mcp"], env=env, cwd=outside_repo,
                          input="".join(json.dumps(m) + "\n" for m in lines),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = {m["id"]: m for m in map(json.loads, done.stdout.splitlines())}
    assert sorted(answers) == list(range(1, 7))
    assert all("result" in answers[i] and not answers[i]["result"].get("isError")
               for i in range(2, 7))


def test_a_traced_round_trip_marks_every_hop_in_order(env: dict[str, str], tmp_path: Path,
                                                      outside_repo: Path) -> None:
    """``MEMVID_HOP_TRACE`` (``bench_roundtrip.py --hops``): the relay and the service each
    mark a tool call's hops, on one clock, in the order the call crosses them."""
    trace = tmp_path / "hops"
    trace.mkdir()
    client = Client(dict(env, MEMVID_HOP_TRACE=str(trace)), outside_repo)
    _structured(client.tool("memory_store", text="the deploy runs on Fridays"))
    before = time.monotonic_ns()
    found = _structured(client.tool("memory_search", query="deploy"))
    assert found["results"]
    assert client.close() == 0
    (service,) = {pid for _, pid, label in hops.read(trace) if label.startswith("service.")}
    relay = client.proc.pid
    order = ["relay.read", "relay.forward", "service.read", "service.parsed", "tool.call",
             "work.start", "search.done", "work.end", "work.back", "tool.done",
             "service.reply", "relay.answer", "relay.write"]
    later = [event for event in hops.read(trace) if event[0] > before]
    start = next(i for i, (_, _, label) in enumerate(later) if label == "relay.read")
    search = later[start:]  # a mark of the store call may land after ``before``
    first = {label: (stamp, pid) for stamp, pid, label in reversed(search)}
    assert [label for label in sorted(first, key=first.__getitem__) if label in order] == order
    assert {first[label][1] for label in order if label.startswith("relay.")} == {relay}
    assert {first[label][1] for label in order if not label.startswith("relay.")} == {service}


def test_a_search_skips_the_thread_hop_only_while_its_session_is_alone(
        env: dict[str, str], tmp_path: Path, outside_repo: Path) -> None:
    """ADR 0030: with one connection, a warm lexical search runs on the service's event loop
    (marked ``work.inline``); while a second session is connected it runs in a worker thread."""
    trace = tmp_path / "hops"
    trace.mkdir()
    traced = dict(env, MEMVID_HOP_TRACE=str(trace))
    client = Client(traced, outside_repo)
    _structured(client.tool("memory_store", text="the deploy runs on Fridays"))

    def inline_searches() -> int:
        labels = [label for _, _, label in hops.read(trace)]
        return labels.count("work.inline")

    for _ in range(3):
        _structured(client.tool("memory_search", query="deploy", mode="lexical"))
    alone = inline_searches()
    assert alone >= 2  # the first search may still open the scopes in a worker thread
    other = Client(env, outside_repo, "other")
    for _ in range(3):
        assert _structured(client.tool("memory_search", query="deploy",
                                       mode="lexical"))["results"]
    assert inline_searches() == alone
    assert other.close() == 0
    assert client.close() == 0
