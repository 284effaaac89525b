"""Distributed k-means benchmark: the same fit (k-means||, then a fixed number of Lloyd
iterations on overlapping blobs, whose labels keep changing) in process with 1..N threads, and on 1..N `ferrocluster-worker` processes of one
thread each, side by side in this run. Prints medians of wall and CPU time, the Redis
commands and step tasks of one fit, and the ratios against the project targets (>= 1.8x from 1 to 2
workers, 2 workers within 10% of 2 threads in one process).

    python bench/bench_distributed_kmeans.py [--workers 1,2] [--n ROWS] [--d 64] [--k 32] [--iter 30]
        [--repeat 3] [--quick] [--source npy|memory]

By default the rows are whole shards of 65,536 rows, at least 16 of them and a multiple of
every worker count (1,048,576 rows for 1,2), so that every worker holds as many rows and
the work (n x d x k per iteration) dwarfs the per-iteration cost of the queue. On workers
the rows are a .npy file the workers read themselves (`fc.datasets.npy`; `--source memory`:
the array, stored in Redis by the fit for the workers to load); the fit includes their loading.

`bench/bench_distributed.py` (make bench-distributed) runs this together with distributed
feature extraction. Needs redis-server, a release build of ferrocluster and
ferrocluster-worker (CARGO_TARGET_DIR or ./target) and the ferrocluster Python package.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

import ferrocluster as fc
from distributed_support import (Timing, Workers, add_common_options, add_kmeans_options, counted, load_line,
                                 measure, print_scaling, settle_defaults, start_redis)

SHARD_ROWS = 65_536


def default_rows(args: argparse.Namespace) -> int:
    """Whole shards, a multiple of every worker count, at least 16 (4 with --quick)."""
    lcm = math.lcm(*args.workers)
    least = 4 if args.quick else 16
    return SHARD_ROWS * lcm * math.ceil(least / lcm)


def bench_kmeans(url: str, args: argparse.Namespace, tmp: str) -> dict:
    """Median timings of the fit per thread count and per worker count, and the Redis
    commands and step tasks of one fit per worker count."""
    # Overlapping blobs: labels keep changing, so the fit runs its iterations (tol=0 stops
    # only when no label changes).
    rng = np.random.default_rng(0)
    centres = rng.uniform(-1, 1, size=(args.k, args.d))
    X = (centres[rng.integers(0, args.k, args.n)] + rng.normal(size=(args.n, args.d))).astype(np.float32)
    models = {}
    shared = X
    if args.source == "npy":
        np.save(Path(tmp) / "x.npy", X)
        shared = fc.datasets.npy(Path(tmp) / "x.npy")

    def fit(key, data=X, **options):
        models[key] = fc.KMeans(args.k, init="k-means||", max_iter=args.iter, tol=0.0, random_state=0,
                                **options).fit(data)

    threads = {t: measure(lambda: fit(("threads", t), distributed=False, n_threads=t), args.repeat, url)
               for t in args.workers}
    reference = models[("threads", min(args.workers))]
    workers: dict[int, Timing] = {}
    traffic: dict[int, tuple[int, int]] = {}
    for count in args.workers:
        namespace = f"bench-kmeans-{count}"
        with Workers(url, namespace, count) as pool:
            fc.init(url, namespace=namespace)
            try:
                workers[count] = measure(lambda: fit(("workers", count), shared, distributed=True), args.repeat, url,
                                         pool)
                model = models[("workers", count)]
                assert np.array_equal(model.labels_, reference.labels_), "the cluster fit differs from the local one"
                assert abs(model.inertia_ - reference.inertia_) <= 1e-6 * reference.inertia_
                traffic[count] = counted(url, pool, lambda: fit(("workers", count), shared, distributed=True))
            finally:
                fc.shutdown()
    return {"threads": threads, "workers": workers, "traffic": traffic, "n_iter": reference.n_iter_}


def report(args: argparse.Namespace, result: dict) -> None:
    shards = math.ceil(args.n / SHARD_ROWS)
    title = (f"k-means: k-means|| + {result['n_iter']} Lloyd iterations, n={args.n:,} x d={args.d}, k={args.k}, "
             f"{shards} shards of {SHARD_ROWS:,} rows, workers reading {args.source} ({load_line()})")
    print_scaling(title, result["threads"], result["workers"])
    for count, (calls, tasks, top) in result["traffic"].items():
        print(f"  one fit on {count:2d} worker(s): {calls} Redis commands, {tasks} tasks "
              f"({tasks / count:.0f} per worker: at most one per step, and the release); "
              f"most of Redis's time: {top}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser)
    add_kmeans_options(parser)
    args = parser.parse_args()
    settle(args)
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(tmp)
        try:
            result = bench_kmeans(url, args, tmp)
        finally:
            redis.terminate()
            redis.wait(10)
    report(args, result)


def settle(args: argparse.Namespace) -> None:
    """Fills the k-means options left unset for a full or a --quick run."""
    settle_defaults(args, iter=(30, 10))
    if args.n is None:
        args.n = default_rows(args)


if __name__ == "__main__":
    main()
