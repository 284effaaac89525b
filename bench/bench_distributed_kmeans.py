"""Distributed k-means benchmark: the same fit (k-means||, fixed iterations) in process with 1
and 2 threads, and on 1 and 2 `ferrocluster-worker` processes of one thread each, side by
side in this run. Prints medians and the ratios issue 3 asks for (≥ 1.8× from 1 to 2 workers,
2 workers within 10% of 2 threads in one process).

    python bench/bench_distributed_kmeans.py [--n 400000] [--d 32] [--k 32] [--iter 20] [--repeat 3]

Needs redis-server and a release build of ferrocluster-worker (CARGO_TARGET_DIR or ./target).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import ferrocluster as fc

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "ferrocluster-worker"


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


def start_workers(url: str, namespace: str, count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "RUST_LOG": "warn"}
    workers = [
        subprocess.Popen([str(WORKER), "--redis", url, "--namespace", namespace, "--concurrency", "1"], env=env)
        for _ in range(count)
    ]
    queue = fc._core.Queue(url, namespace=namespace)
    while len(json.loads(queue.stats())["workers"]) < count:
        time.sleep(0.05)
    return workers


def median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--iter", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.uniform(-5, 5, size=(args.k, args.d))
    X = (centres[rng.integers(0, args.k, args.n)] + rng.normal(size=(args.n, args.d))).astype(np.float32)

    def fit(**options):
        return fc.KMeans(args.k, init="k-means||", max_iter=args.iter, tol=0.0, random_state=0, **options).fit(X)

    threads = {t: median(lambda: fit(distributed=False, n_threads=t), args.repeat) for t in (1, 2)}
    reference = fit(distributed=False, n_threads=2)
    workers_time = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(tmp)
        try:
            for count in (1, 2):
                namespace = f"bench{count}"
                workers = start_workers(url, namespace, count)
                fc.init(url, namespace=namespace)
                try:
                    model = fit(distributed=True)
                    assert np.array_equal(model.labels_, reference.labels_), "the cluster fit differs from the local one"
                    workers_time[count] = median(lambda: fit(distributed=True), args.repeat)
                finally:
                    fc.shutdown()
                    for w in workers:
                        w.terminate()
                    for w in workers:
                        w.wait(30)
        finally:
            redis.terminate()
            redis.wait(10)
    print(f"k-means|| + {args.iter} Lloyd iterations, n={args.n}, d={args.d}, k={args.k}, shards of 65,536 rows")
    for t, s in threads.items():
        print(f"  in process, {t} thread(s)        {s:8.3f} s")
    for c, s in workers_time.items():
        print(f"  {c} worker(s) x 1 thread         {s:8.3f} s")
    speedup = workers_time[1] / workers_time[2]
    vs_threads = workers_time[2] / threads[2]
    print(f"  1 -> 2 workers speed-up          {speedup:8.2f}x  (target >= 1.8x: {'MET' if speedup >= 1.8 else 'not met'})")
    print(f"  2 workers / 2 threads in process {vs_threads:8.2f}   (target <= 1.10: {'MET' if vs_threads <= 1.10 else 'not met'})")


if __name__ == "__main__":
    main()
