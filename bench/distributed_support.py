"""What the distributed benchmarks share: a private redis-server, local workers of one thread
each, medians, and the scaling table with the targets of issue 3."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
CLI = BIN / "ferrocluster"
WORKER = BIN / "ferrocluster-worker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(tmp: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--dir", tmp, "--save", "", "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return redis, f"redis://127.0.0.1:{port}/0"


class Workers:
    """`count` single-threaded workers (concurrency 1) on `namespace`, stopped on exit."""

    def __init__(self, url: str, namespace: str, count: int) -> None:
        self.url, self.namespace, self.count = url, namespace, count

    def stats(self) -> dict:
        out = subprocess.run([str(CLI), "queue", "stats", "--json", "--redis", self.url, "--namespace", self.namespace],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    def succeeded(self) -> int:
        return int(self.stats()["counters"].get("succeeded", 0))

    def __enter__(self) -> "Workers":
        env = {**os.environ, "RAYON_NUM_THREADS": "1", "RUST_LOG": "warn"}
        self.procs = [
            subprocess.Popen([str(WORKER), "--redis", self.url, "--namespace", self.namespace, "--concurrency", "1"],
                             env=env)
            for _ in range(self.count)
        ]
        while len(self.stats()["workers"]) < self.count:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        for w in self.procs:
            w.terminate()
        for w in self.procs:
            w.wait(30)


def median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def counts(text: str) -> list[int]:
    return [int(c) for c in text.split(",")]


def print_scaling(title: str, threads: dict, workers: dict) -> None:
    """Seconds per thread count in one process and per worker count, with speed-ups,
    parallel efficiency and workers / threads against issue 3's targets."""
    print(title)
    for t, s in threads.items():
        print(f"  in process, {t:2d} thread(s)         {s:8.3f} s")
    for c, s in workers.items():
        print(f"  {c:2d} worker(s) x 1 thread          {s:8.3f} s")
    one = workers.get(1)
    for c, s in workers.items():
        if c == 1 or one is None:
            continue
        speedup, efficiency, vs_threads = one / s, one / (c * s), s / threads[c]
        line = f"  1 -> {c:2d} workers: speed-up {speedup:5.2f}x, efficiency {efficiency:4.0%}, {c} workers / {c} threads {vs_threads:5.2f}"
        if c == 2:
            line += f"  (targets >= 1.8x: {'MET' if speedup >= 1.8 else 'not met'}; <= 1.10: {'MET' if vs_threads <= 1.10 else 'not met'})"
        if c >= 14:
            line += f"  (target >= 75% efficiency: {'MET' if efficiency >= 0.75 else 'not met'})"
        print(line, flush=True)


def add_kmeans_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=400_000, help="k-means part: rows")
    parser.add_argument("--d", type=int, default=32, help="k-means part: columns")
    parser.add_argument("--k", type=int, default=32, help="k-means part: clusters")
    parser.add_argument("--iter", type=int, default=20, help="k-means part: Lloyd iterations")
