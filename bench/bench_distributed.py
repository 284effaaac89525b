"""Distributed execution benchmark (make bench-distributed): feature extraction of a folder of
images, and k-means, each in one process with 1..N threads and on 1..N local
`ferrocluster-worker` processes of one thread each, side by side in this run. Prints medians
of wall time (scaling cannot be measured otherwise, so a loaded machine makes them noisy) and
of CPU time (what the queue costs beyond the work, which load does not hide), and the ratios
the project targets: >= 1.8x from 1 to 2 workers, 2 workers within 10% of 2 threads, and on a
16-core machine >= 75% parallel efficiency at 14 workers.

    python bench/bench_distributed.py [--workers 1,2] [--repeat 3] [--quick] [--part features|kmeans]
        [--images 40000] [--size 32] [--chunk N] [--clusters 16] [--shard-rows 2500] [--transfer files|redis]
        [--n ROWS --d 64 --k 32 --iter 30]

Part `features` runs `ferrocluster cluster` on synthetic images, in process with --threads T
and --init 'k-means||', and with --redis and --distributed-fit always on T workers, and reads
the features and fit times it reports in metrics.json (features: listing, extraction and
gathering the rows into the command; the fit: k-means|| over shards of --shard-rows image
features). The workers write the features as .npy files in a shared folder (--shared-dir;
`--transfer redis`: into Redis keys, the path without a shared folder). Part `kmeans` is bench_distributed_kmeans.py (the Python API, float32 blobs,
1,048,576 x 64 by default). --quick runs small sizes once: a check that everything works, not
a measure. Needs redis-server and release builds of ferrocluster and ferrocluster-worker (and
for `kmeans` the ferrocluster Python package).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from distributed_support import (CLI, Timing, Workers, add_common_options, add_kmeans_options, load_line, measure,
                                 print_scaling, settle_defaults, start_redis)


def cluster_run(images: Path, out: Path, args: argparse.Namespace, threads: int, extra: list[str]) -> dict:
    """The features and fit times of one `ferrocluster cluster` run, as its metrics.json reports them."""
    subprocess.run(
        [str(CLI), "--quiet", "--threads", str(threads), "cluster", str(images), "--k", str(args.clusters),
         "--size", str(args.size), "--seed", "0", "--shard-rows", str(args.shard_rows), "-o", str(out), *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    return json.loads((out / "metrics.json").read_text())


def bench_features(url: str, tmp: Path, args: argparse.Namespace) -> None:
    images = tmp / "images"
    subprocess.run([str(CLI), "sample", "synthetic", str(images), "--n", str(args.images), "--size", str(args.size)],
                   check=True, stdout=subprocess.DEVNULL)
    out = tmp / "out"
    features: dict[str, dict[int, Timing]] = {"threads": {}, "workers": {}}
    fit: dict[str, dict[int, Timing]] = {"threads": {}, "workers": {}}
    inertia: dict[tuple[str, int], float] = {}

    def record(where: str, count: int, threads: int, extra: list[str], pool: Workers | None = None) -> None:
        runs = []

        def run() -> None:
            runs.append(cluster_run(images, out, args, threads, extra))

        # The command's CPU covers extraction and fit: it is shown with the features.
        total = measure(run, args.repeat, url, pool)
        seconds = [r["seconds"] for r in runs]
        features[where][count] = Timing(statistics.median(s["features"] for s in seconds), total.cpu, total.parts)
        fit[where][count] = Timing(statistics.median(s["fit"] for s in seconds))
        inertia[(where, count)] = runs[-1]["inertia"]

    for t in args.workers:
        record("threads", t, t, ["--init", "k-means||"])
    for count in args.workers:
        namespace = f"bench-features-{count}"
        with Workers(url, namespace, count) as pool:
            remote = ["--redis", url, "--namespace", namespace, "--distributed-fit", "always"]
            if args.chunk:
                remote += ["--chunk", str(args.chunk)]
            if args.transfer == "files":
                shared = tmp / "shared"
                shared.mkdir(exist_ok=True)
                remote += ["--shared-dir", str(shared)]
            record("workers", count, 1, remote, pool)
    reference = inertia[("threads", min(args.workers))]
    for key, value in inertia.items():
        assert abs(value - reference) <= 1e-6 * reference, f"the fit of {key} differs: inertia {value} vs {reference}"
    chunk = args.chunk or "the default (8 per worker, at most 1024)"
    print_scaling(f"features: HOG of {args.images:,} synthetic {args.size}x{args.size} images, tasks of {chunk}, "
                  f"rows through {'a shared folder' if args.transfer == 'files' else 'Redis'} "
                  f"(CPU: the whole command, fit included) ({load_line()})", features["threads"], features["workers"])
    print_scaling(f"k-means|| fit of those features, k={args.clusters}, shards of {args.shard_rows:,} rows "
                  f"(wall only)", fit["threads"], fit["workers"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser)
    parser.add_argument("--part", choices=["features", "kmeans"], help="only this part")
    parser.add_argument("--images", type=int, help="features part: images (40,000; --quick 4,000)")
    parser.add_argument("--size", type=int, default=32, help="features part: side of the images")
    parser.add_argument("--chunk", type=int,
                        help="features part: images per extract task (default: the command's, from the workers)")
    parser.add_argument("--clusters", type=int, default=16, help="features part: k of the fit")
    parser.add_argument("--shard-rows", type=int, default=2500, help="features part: rows per shard of the fit")
    parser.add_argument("--transfer", choices=["files", "redis"], default="files",
                        help="features part: the workers' rows go to a shared folder (--shared-dir), or through Redis")
    add_kmeans_options(parser)
    args = parser.parse_args()
    settle_defaults(args, images=(40_000, 4_000))
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(tmp)
        try:
            if args.part in (None, "features"):
                bench_features(url, Path(tmp), args)
            if args.part in (None, "kmeans"):
                import bench_distributed_kmeans

                bench_distributed_kmeans.settle(args)
                bench_distributed_kmeans.report(args, bench_distributed_kmeans.bench_kmeans(url, args, tmp))
        finally:
            redis.terminate()
            redis.wait(10)


if __name__ == "__main__":
    main()
