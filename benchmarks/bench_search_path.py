"""Where a search's time goes: ``MemoryManager.search`` per mode, on a store kept between runs.

A profiling companion to ``bench_search_speed.py`` (same corpus, tags, kinds, scopes and
queries): ``--build`` makes the store once in ``--dir`` (reused by later runs, so a change to
the search path can be timed in seconds), then a fresh process times lexical / semantic /
hybrid with the query-vector cache cleared per mode, and with ``--profile MODE`` prints a
cProfile of that mode. Figures carry the load average they were taken at; the process CPU
time per search (all threads) is printed too, as it moves less than wall time when other
jobs share the cores.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_search_path.py --dir /tmp/s --n 100000
--backend file [--build] [--queries 200] [--profile hybrid]``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search_speed as speed
import corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--backend", default="file")
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--modes", default="lexical,semantic,hybrid")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.model = args.model or corpus.default_model()
    args.provider = None
    root = args.dir / f"{args.backend}-{args.n}"
    if args.build:
        root.mkdir(parents=True, exist_ok=False)
        speed.build(root, args.backend, args)
        return
    from memvid_mcp.manager import MemoryManager

    queries = corpus.queries()[: args.queries]
    with MemoryManager.open(root / "data", project=root / "repo",
                            **speed.manager_settings(args, args.backend)) as m:
        assert m.embedder.wait_ready(600), m.embedder.state
        m.search("warm up the searchers", k=10)
        for mode in args.modes.split(","):
            m.embedder.clear_cache()
            prof = cProfile.Profile() if args.profile == mode else None
            times, cpu = [], []
            for i, q in enumerate(queries):
                c0 = time.process_time()
                t0 = time.perf_counter()
                if prof is not None:
                    prof.enable()
                m.search(q, k=10, mode=mode, tags_any=speed.filters_for(i))
                if prof is not None:
                    prof.disable()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            print(f"{mode:9s} p50 {speed.pct(times, 0.5):6.2f} ms  p95 "
                  f"{speed.pct(times, 0.95):6.2f} ms  CPU p50 {speed.pct(cpu, 0.5):6.2f} ms "
                  f"({args.backend}, {args.n:,}; {speed.load()})", flush=True)
            if prof is not None:
                pstats.Stats(prof).sort_stats(args.sort).print_stats(35)


if __name__ == "__main__":
    main()
