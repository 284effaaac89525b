"""Distributed execution benchmark (make bench-distributed): feature extraction of a folder of
images and k-means, each in one process with 1..N threads and on 1..N local
`ferrocluster-worker` processes of one thread each, side by side in this run. Prints medians
(wall time: scaling cannot be measured otherwise, so a loaded machine makes them noisy) and
the ratios issue 3 asks for: >= 1.8x from 1 to 2 workers, 2 workers within 10% of 2 threads,
and on a 16-core machine >= 75% parallel efficiency at 14 workers.

    python bench/bench_distributed.py [--workers 1,2] [--images 20000] [--size 32] [--repeat 3]
        [--part cli|kmeans] [--shard-rows 2500] [--n 400000 --d 32 --k 32 --iter 20]

Part `cli` runs `ferrocluster cluster` on synthetic images, in process with --threads T and
--init 'k-means||', and with --redis and --distributed-fit always on T workers, and reads the
features and fit times it reports in metrics.json (the fit: k-means|| over shards of
--shard-rows image features). Part `kmeans` is bench_distributed_kmeans.py (the Python API,
float32 blobs). Needs redis-server and release builds of ferrocluster and ferrocluster-worker
(and for `kmeans` the ferrocluster Python package).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from distributed_support import CLI, Workers, add_kmeans_options, counts, print_scaling, start_redis


def cluster_seconds(images: Path, out: Path, args: argparse.Namespace, threads: int, extra: list[str]) -> dict:
    """The features and fit times of one `ferrocluster cluster` run, as its metrics.json reports them."""
    subprocess.run(
        [str(CLI), "--quiet", "--threads", str(threads), "cluster", str(images), "--k", str(args.clusters),
         "--size", str(args.size), "--seed", "0", "--shard-rows", str(args.shard_rows), "-o", str(out), *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    return json.loads((out / "metrics.json").read_text())["seconds"]


def bench_cli(url: str, tmp: Path, args: argparse.Namespace) -> None:
    images = tmp / "images"
    subprocess.run([str(CLI), "sample", "synthetic", str(images), "--n", str(args.images), "--size", str(args.size)],
                   check=True, stdout=subprocess.DEVNULL)
    out = tmp / "out"
    features: dict[str, dict] = {"threads": {}, "workers": {}}
    fit: dict[str, dict] = {"threads": {}, "workers": {}}

    def record(where: str, count: int, threads: int, extra: list[str]) -> None:
        runs = [cluster_seconds(images, out, args, threads, extra) for _ in range(args.repeat)]
        features[where][count] = statistics.median(r["features"] for r in runs)
        fit[where][count] = statistics.median(r["fit"] for r in runs)

    for t in args.workers:
        record("threads", t, t, ["--init", "k-means||"])
    for count in args.workers:
        namespace = f"bench-cli-{count}"
        with Workers(url, namespace, count):
            remote = ["--redis", url, "--namespace", namespace, "--distributed-fit", "always", "--chunk", str(args.chunk)]
            record("workers", count, 1, remote)
    print_scaling(f"HOG features of {args.images} synthetic {args.size}x{args.size} images, tasks of {args.chunk}",
                  features["threads"], features["workers"])
    print_scaling(f"k-means|| fit of those features, k={args.clusters}, shards of {args.shard_rows} rows",
                  fit["threads"], fit["workers"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=counts, default=[1, 2], help="worker (and thread) counts, e.g. 1,2,4,8,14")
    parser.add_argument("--part", choices=["cli", "kmeans"], help="only this part")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=20_000, help="images to extract features of")
    parser.add_argument("--size", type=int, default=32, help="side of the images")
    parser.add_argument("--chunk", type=int, default=256, help="images per extract task")
    parser.add_argument("--clusters", type=int, default=16, help="k of the CLI fit")
    parser.add_argument("--shard-rows", type=int, default=2500, help="rows per shard of the CLI fit")
    add_kmeans_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(tmp)
        try:
            if args.part in (None, "cli"):
                bench_cli(url, Path(tmp), args)
            if args.part in (None, "kmeans"):
                import bench_distributed_kmeans

                bench_distributed_kmeans.report(args, bench_distributed_kmeans.bench_kmeans(url, args))
        finally:
            redis.terminate()
            redis.wait(10)


if __name__ == "__main__":
    main()
