"""Distributed execution benchmark (make bench-distributed): feature extraction of a folder of
images and a k-means fit, each in one process with 1..N threads and on 1..N local
`ferrocluster-worker` processes of one thread each, side by side in this run. Prints medians
(wall time: scaling cannot be measured otherwise, so a loaded machine makes them noisy) and
the ratios issue 3 asks for: >= 1.8x from 1 to 2 workers, 2 workers within 10% of 2 threads,
and on a 16-core machine >= 75% parallel efficiency at 14 workers.

    python bench/bench_distributed.py [--workers 1,2] [--images 20000] [--size 32] [--repeat 3]
        [--part features|kmeans] [--n 400000 --d 32 --k 32 --iter 20]

Extraction runs `ferrocluster cluster` (locally with --threads T; with --redis and
--distributed-fit never on the workers) and reads the features time it reports in
metrics.json. Needs redis-server and release builds of ferrocluster and ferrocluster-worker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_distributed_kmeans import BIN, Workers, add_kmeans_options, bench_kmeans, counts, print_scaling, start_redis

CLI = BIN / "ferrocluster"


def features_seconds(images: Path, out: Path, size: int, threads: int, extra: list[str]) -> float:
    """The features time of one `ferrocluster cluster` run, as its metrics.json reports it."""
    subprocess.run(
        [str(CLI), "--quiet", "--threads", str(threads), "cluster", str(images), "--k", "2", "--size", str(size),
         "-o", str(out), *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    return json.loads((out / "metrics.json").read_text())["seconds"]["features"]


def bench_features(url: str, tmp: Path, args: argparse.Namespace) -> dict:
    images = tmp / "images"
    subprocess.run([str(CLI), "sample", "synthetic", str(images), "--n", str(args.images), "--size", str(args.size)],
                   check=True, stdout=subprocess.DEVNULL)
    out = tmp / "out"

    def runs(threads: int, extra: list[str]) -> float:
        return statistics.median(features_seconds(images, out, args.size, threads, extra) for _ in range(args.repeat))

    threads = {t: runs(t, []) for t in args.workers}
    workers = {}
    for count in args.workers:
        namespace = f"bench-features-{count}"
        with Workers(url, namespace, count):
            remote = ["--redis", url, "--namespace", namespace, "--distributed-fit", "never", "--chunk", str(args.chunk)]
            workers[count] = runs(1, remote)
    return {"threads": threads, "workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=counts, default=[1, 2], help="worker (and thread) counts, e.g. 1,2,4,8,14")
    parser.add_argument("--part", choices=["features", "kmeans"], help="only this part")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=20_000, help="images to extract features of")
    parser.add_argument("--size", type=int, default=32, help="side of the images")
    parser.add_argument("--chunk", type=int, default=256, help="images per extract task")
    add_kmeans_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(tmp)
        try:
            if args.part in (None, "features"):
                result = bench_features(url, Path(tmp), args)
                print_scaling(f"HOG features of {args.images} synthetic {args.size}x{args.size} images, tasks of {args.chunk}", result)
            if args.part in (None, "kmeans"):
                result = bench_kmeans(url, args)
                print_scaling(f"k-means|| + {args.iter} Lloyd iterations, n={args.n}, d={args.d}, k={args.k}, shards of 65,536 rows", result)
                print(f"  queue cost per shard step (1 worker - 1 thread) / {result['steps']} steps: {result['per_step'] * 1e3:6.2f} ms")
        finally:
            redis.terminate()
            redis.wait(10)


if __name__ == "__main__":
    main()
