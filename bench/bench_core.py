"""Core benchmark: ferrocluster against scikit-image, scikit-learn, linfa, Pillow and the
machine's sgemm ceiling, measured side by side in this run. Prints medians and ratios against
the project's core-engine targets.

    python bench/bench_core.py [--quick] [--part features|kmeans|memory|linfa] [--clock cpu]

--quick: k-means on n=2e5 instead of 1e6 (and linfa on 2e4 instead of 5e4). --clock cpu: the
one-core ratios in this process's CPU time instead of wall time, which other work on a shared
machine disturbs far less (thread scaling is always wall time); the k-means part then also
times one-thread fits and k-means++ alone on that clock. Each feature ratio is of medians over
rounds that run ours and the anchor in turn.

linfa-clustering is built from bench/linfa_kmeans (a crate outside the workspace, so that the
project's build never compiles linfa) when cargo is on PATH; without it that part is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

import ferrocluster as fc

RESULTS: list[tuple[str, float, float, str]] = []
CLOCK = time.perf_counter


def report(name: str, ours: float, theirs: float, target: float, unit: str = "s") -> None:
    ratio = theirs / ours
    status = "MET" if ratio >= target else "not met"
    RESULTS.append((name, ratio, target, status))
    print(f"{name:<58} ours {ours * 1e3:10.3f} ms  anchor {theirs * 1e3:10.3f} ms  ratio {ratio:7.2f}x  (target {target}x: {status})", flush=True)


def side_by_side(ours, theirs, rounds: int = 7, ours_number: int = 1, theirs_number: int = 1, clock=None) -> tuple[float, float]:
    """Median seconds per call of `ours` and `theirs` over `rounds` rounds that run each in turn
    (`*_number` calls a round), so that a change of load on this shared machine falls on both.
    One untimed call of each first, so that one-off work (tables, thread pools, caches) stays
    out of the first round."""
    clock = clock or CLOCK
    ours()
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, number, out in ((ours, ours_number, times[0]), (theirs, theirs_number, times[1])):
            start = clock()
            for _ in range(number):
                fn()
            out.append((clock() - start) / number)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_features() -> None:
    from skimage.feature import hog, local_binary_pattern

    rng = np.random.default_rng(0)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    rgb = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    args = dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
    with threadpool_limits(1):
        ours, theirs = side_by_side(lambda: fc.hog(image, **args), lambda: hog(image, **args), ours_number=200, theirs_number=20)
        report("HOG 64x64 grey, 1 thread (vs skimage)", ours, theirs, 40)
        ours, theirs = side_by_side(
            lambda: fc.hog(rgb, channel_axis=-1, **args), lambda: hog(rgb, channel_axis=-1, **args), ours_number=200, theirs_number=20
        )
        report("HOG 64x64 RGB, 1 thread (vs skimage)", ours, theirs, 40)
        ours, theirs = side_by_side(
            lambda: fc.local_binary_pattern(image, 8, 1, "uniform"),
            lambda: local_binary_pattern(image, 8, 1, "uniform"),
            ours_number=400,
            theirs_number=20,
        )
        report("LBP uniform P=8 R=1 64x64, 1 thread (vs skimage)", ours, theirs, 25)

    images, _ = fc.datasets.make_images(n=400, size=(64, 64), classes=8, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        paths = []
        for i, img in enumerate(images):
            p = Path(tmp) / f"{i:04}.png"
            Image.fromarray(img).save(p)
            paths.append(str(p))
        config = fc.FeatureConfig(size=(64, 64), hog=fc.Hog(cells_per_block=(2, 2)))

        def pillow_skimage():
            for p in paths:
                arr = np.asarray(Image.open(p).convert("RGB"))
                hog(arr, channel_axis=-1, **args)

        ours1, theirs = side_by_side(lambda: fc.extract_features(paths, config, n_threads=1), pillow_skimage, rounds=5)
        report(f"decode PNG + HOG RGB, {len(paths)} files, per core (vs Pillow+skimage)", ours1, theirs, 15)
        wall1, wall2 = side_by_side(
            lambda: fc.extract_features(paths, config, n_threads=1),
            lambda: fc.extract_features(paths, config, n_threads=2),
            rounds=5,
            clock=time.perf_counter,
        )
        report("  features scaling 1 -> 2 threads (wall time)", wall2, wall1, 1.8)


SGEMM = textwrap.dedent(
    """
    import time, numpy as np
    from threadpoolctl import threadpool_limits, threadpool_info
    a = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    b = np.random.default_rng(1).random((4096, 4096), dtype=np.float32)
    with threadpool_limits(1):
        np.dot(a, b)
        best = min((lambda s: (np.dot(a, b), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(3))
    print(2 * 4096**3 / best / 1e9)
    """
)


def sgemm_ceiling() -> float:
    """1-thread sgemm GFLOP/s from numpy's BLAS, with the OpenBLAS overrides unset for this command only."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run([sys.executable, "-c", SGEMM], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def blobs(n: int, d: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(k, d)).astype(np.float32)
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)).astype(np.float32)).astype(np.float32)


def interleaved(runs: dict[str, Callable[[int], float]], rounds: int) -> dict[str, float]:
    """Median seconds of each run over `rounds` rounds; every round runs each once, in turn, so
    that the load of this shared machine falls on all of them alike. A run gets the round number."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            times[name].append(run(r))
    for name, t in times.items():
        print(f"  {name:<40} " + " ".join(f"{v * 1e3:9.1f}" for v in t) + "  ms", flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_kmeans(n: int) -> None:
    from sklearn.cluster import KMeans as SkKMeans

    d = k = 64
    X = blobs(n, d, k)
    init = X[np.random.default_rng(1).choice(n, k, replace=False)].astype(np.float64)
    iters = 10
    ceiling = sgemm_ceiling()
    print(f"sgemm ceiling (numpy BLAS, 1 thread): {ceiling:.1f} GFLOP/s", flush=True)

    def lloyd(threads: int, ours: bool) -> Callable[[int], float]:
        """Seconds per Lloyd iteration of a fit from given centres (tol=0: every iteration runs)."""

        def run(_: int) -> float:
            if ours:
                est = fc.KMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0, n_threads=threads)
                start = time.perf_counter()
                est.fit(X)
            else:
                est = SkKMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0)
                with threadpool_limits(threads):
                    start = time.perf_counter()
                    est.fit(X)
            return (time.perf_counter() - start) / est.n_iter_

        return run

    print("Lloyd, seconds per iteration (fit time / n_iter) per round:")
    t = interleaved({"ours, 2 threads": lloyd(2, True), "ours, 1 thread": lloyd(1, True), "sklearn, 2 threads": lloyd(2, False)}, 5)
    ours2, ours1, theirs2 = t["ours, 2 threads"], t["ours, 1 thread"], t["sklearn, 2 threads"]
    report(f"Lloyd iteration f32 n={n:.0e} d=64 k=64, 2 threads (vs sklearn)", ours2, theirs2, 3)
    gflops = 2 * n * k * d / ours2 / 1e9
    share = gflops / (2 * ceiling)
    RESULTS.append(("  Lloyd GFLOP/s share of 2x sgemm ceiling (>= 45%)", share / 0.45, 1.0, "MET" if share >= 0.45 else "not met"))
    print(f"  Lloyd: {gflops:.1f} GFLOP/s on 2 threads = {share:.0%} of 2 x {ceiling:.0f} GFLOP/s (target 45%)", flush=True)
    report("  Lloyd scaling 1 -> 2 threads", ours2, ours1, 1.8)

    # The default fit's time depends on its seed (how many Lloyd iterations follow k-means++):
    # each round uses its own seed, the same for both.
    fits: dict[str, list] = {"ours": [], "sklearn": []}

    def default_fit(ours: bool) -> Callable[[int], float]:
        def run(seed: int) -> float:
            start = time.perf_counter()
            if ours:
                model = fc.KMeans(k, random_state=seed).fit(X)
            else:
                with threadpool_limits(2):
                    model = SkKMeans(k, random_state=seed).fit(X)
            elapsed = time.perf_counter() - start
            fits["ours" if ours else "sklearn"].append((model.inertia_, model.n_iter_))
            return elapsed

        return run

    print("default KMeans(64).fit, seconds per round (seed = round):")
    t = interleaved({"ours": default_fit(True), "sklearn, 2 threads": default_fit(False)}, 3)
    for name, runs in fits.items():
        print(f"  {name:<8} n_iter {[it for _, it in runs]}  inertia {[f'{i:.6g}' for i, _ in runs]}", flush=True)
    report(f"default KMeans(64).fit f32 n={n:.0e} end to end (vs sklearn)", t["ours"], t["sklearn, 2 threads"], 10)
    quality = statistics.median(i for i, _ in fits["ours"]) / statistics.median(i for i, _ in fits["sklearn"])
    print(f"  median inertia ours / sklearn = {quality:.4f} (equal quality: <= 1.01)", flush=True)
    RESULTS.append(("  default fit inertia within 1% of sklearn", 1.01 / max(quality, 1e-12), 1.0, "MET" if quality <= 1.01 else "not met"))
    if CLOCK is time.process_time:
        bench_kmeans_cpu(X, init)


def bench_kmeans_cpu(X: np.ndarray, init: np.ndarray) -> None:
    """One-thread fits in process CPU time: the default fit, a Lloyd iteration, and k-means++ alone
    (ours: a one-iteration k-means++ fit minus a one-iteration fit from given centres; sklearn:
    its `kmeans_plusplus`)."""
    from sklearn.cluster import KMeans as SkKMeans, kmeans_plusplus

    k, n = len(init), len(X)

    def timed(fn: Callable[[], object]) -> float:
        with threadpool_limits(1):
            start = time.process_time()
            fn()
            return time.process_time() - start

    def ours(**kw) -> Callable[[int], float]:
        return lambda seed: timed(lambda: fc.KMeans(k, n_threads=1, **{"random_state": seed, **kw}).fit(X))

    def theirs(**kw) -> Callable[[int], float]:
        return lambda seed: timed(lambda: SkKMeans(k, **{"random_state": seed, **kw}).fit(X))

    print("one thread, process CPU seconds per round (seed = round):")
    t = interleaved(
        {
            "ours, default fit": ours(),
            "sklearn, default fit": theirs(),
            "ours, 1 iteration from k-means++": ours(max_iter=1),
            "ours, 1 iteration from given centres": ours(init=init, n_init=1, max_iter=1),
            "sklearn, kmeans_plusplus": lambda seed: timed(lambda: kmeans_plusplus(X, k, random_state=seed)),
            "ours, Lloyd 10 iterations": ours(init=init, n_init=1, max_iter=10, tol=0.0),
            "sklearn, Lloyd 10 iterations": theirs(init=init, n_init=1, max_iter=10, tol=0.0),
        },
        3,
    )
    report(f"default KMeans(64).fit f32 n={n:.0e}, 1 thread, CPU time (vs sklearn)", t["ours, default fit"], t["sklearn, default fit"], 10)
    plusplus = t["ours, 1 iteration from k-means++"] - t["ours, 1 iteration from given centres"]
    report("  k-means++ alone, 1 thread, CPU time (vs sklearn kmeans_plusplus)", plusplus, t["sklearn, kmeans_plusplus"], 10)
    report("  Lloyd iteration, 1 thread, CPU time (vs sklearn)", t["ours, Lloyd 10 iterations"], t["sklearn, Lloyd 10 iterations"], 3)


LINFA_CRATE = Path(__file__).resolve().parent / "linfa_kmeans"


def linfa_binary() -> str | None:
    """Builds bench/linfa_kmeans (release) and returns its executable, or None without cargo."""
    import shutil

    if shutil.which("cargo") is None:
        print("linfa: cargo is not on PATH, skipped", flush=True)
        return None
    cmd = ["cargo", "build", "--release", "--quiet", "--manifest-path", str(LINFA_CRATE / "Cargo.toml"), "--message-format=json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"linfa: building {LINFA_CRATE} failed, skipped:\n{out.stderr[-2000:]}", flush=True)
        return None
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            return msg["executable"]
    raise RuntimeError("cargo built no executable for bench/linfa_kmeans")


def bench_linfa(n: int) -> None:
    """linfa-clustering 0.8.1 KMeans against ours on the same data, both on one thread, in process
    CPU time: one iteration from given centres, and k-means++ (a one-iteration fit from k-means++
    minus the one from given centres). linfa's k-means++ is O(n·k²·d), hours at n=1e6, so this runs
    at a smaller n; times are also given per 1e6 rows (both are linear in n at fixed k)."""
    exe = linfa_binary()
    if exe is None:
        return
    d = k = 64
    X = blobs(n, d, k)
    init = X[np.random.default_rng(1).choice(n, k, replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        xf, cf = Path(tmp) / "x.f32", Path(tmp) / "init.f32"
        X.astype("<f4").tofile(xf)
        init.astype("<f4").tofile(cf)
        env = {**os.environ, "RAYON_NUM_THREADS": "1"}
        out = subprocess.run([exe, str(xf), str(n), str(d), str(cf), str(k)], env=env, capture_output=True, text=True, check=True)
    linfa = json.loads(out.stdout)

    def cpu(fn: Callable[[], object]) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    one = lambda: cpu(lambda: fc.KMeans(k, init=init.astype(np.float64), n_init=1, max_iter=1, n_threads=1).fit(X))
    pp = lambda: cpu(lambda: fc.KMeans(k, random_state=0, max_iter=1, n_threads=1).fit(X))
    iteration = statistics.median(one() for _ in range(5))
    plusplus = statistics.median(pp() for _ in range(5)) - iteration
    linfa_pp = linfa["plusplus_s"] - linfa["iteration_s"]
    per_m = 1e6 / n
    print(f"linfa-clustering 0.8.1 at n={n:.0e} (1 thread, process CPU time; per 1e6 rows = x {per_m:g}):", flush=True)
    print(f"  iteration: linfa {linfa['iteration_s'] * per_m:.2f} s, ours {iteration * per_m:.3f} s per 1e6 rows", flush=True)
    print(f"  k-means++: linfa {linfa_pp * per_m:.1f} s, ours {plusplus * per_m:.3f} s per 1e6 rows", flush=True)
    report(f"  Lloyd iteration n={n:.0e}, 1 thread, CPU time (vs linfa; sklearn's bar)", iteration, linfa["iteration_s"], 3)
    report(f"  k-means++ n={n:.0e}, 1 thread, CPU time (vs linfa; sklearn's bar)", plusplus, linfa_pp, 10)


MEMORY = textwrap.dedent(
    """
    import sys, numpy as np, ferrocluster as fc

    def status(field):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field))

    n = int(sys.argv[1])
    X = np.random.default_rng(0).standard_normal((n, 64), dtype=np.float32)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets the peak (VmHWM) to the current resident size
    before = status("VmRSS:")
    fc.KMeans(64, random_state=0, max_iter=20).fit(X)
    print((status("VmHWM:") - before) / X.nbytes)
    """
)


def bench_memory(n: int) -> None:
    out = subprocess.run([sys.executable, "-c", MEMORY, str(n)], capture_output=True, text=True, check=True)
    extra = float(out.stdout.strip())
    status = "MET" if extra <= 1.0 else "not met"
    RESULTS.append(("peak memory of the fit, extra copies of X (<= 1)", extra, 1.0, status))
    print(f"peak extra memory of KMeans.fit = {extra:.2f} x sizeof(X) (target <= 1 copy: {status})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller k-means data (2e5 rows)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--part", choices=("all", "features", "kmeans", "memory", "linfa"), default="all", help="run only one part")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what the one-core feature ratios time")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    n = 200_000 if args.quick else 1_000_000
    print(f"ferrocluster {fc.__version__}, {os.cpu_count()} CPUs, one-core feature timings on {args.clock} clock", flush=True)
    if args.part in ("all", "features"):
        bench_features()
    if args.part in ("all", "kmeans"):
        bench_kmeans(n)
    if args.part in ("all", "kmeans", "memory"):
        bench_memory(n)
    if args.part in ("all", "kmeans", "linfa"):
        bench_linfa(20_000 if args.quick else 50_000)
    print("\nsummary (ratio / target):")
    for name, ratio, target, status in RESULTS:
        print(f"  {name:<66} {ratio:7.2f} / {target:<4} {status}")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("name", "ratio", "target", "status"), r)) for r in RESULTS], indent=2))


if __name__ == "__main__":
    main()
