"""What the distributed benchmarks share: a private redis-server, local workers of one thread
each, medians of wall and CPU time, Redis command counts, and the scaling table with the
project's scaling targets."""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import sys
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python_api" / "tests"))
import redis_support  # noqa: E402  (the tests' redis-server start, shared)

BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
CLI = BIN / "ferrocluster"
WORKER = BIN / "ferrocluster-worker"

FAIRNESS = ("same threads in all: each worker is a process with 1 rayon thread (RAYON_NUM_THREADS=1), "
            "in process the fit/extraction runs on T threads; coordinator and redis-server run beside them")


def start_redis(tmp: str) -> tuple[subprocess.Popen, str]:
    """redis-server (AOF on) with its files in `tmp`, once its log says it is ready, and its URL."""
    redis, port = redis_support.start_redis(tmp, "--appendonly", "yes")
    return redis, f"redis://127.0.0.1:{port}/0"


def redis_command(url: str, *args: str) -> str:
    """One command over RESP, its reply as text (status or bulk string)."""
    parsed = urlparse(url)
    request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection((parsed.hostname, parsed.port)) as s:
        s.sendall(request.encode())
        reply = b""
        while True:
            reply += s.recv(1 << 16)
            if reply.startswith((b"+", b"-", b":")) and reply.endswith(b"\r\n"):
                return reply[1:-2].decode()
            if reply.startswith(b"$"):
                header, _, body = reply.partition(b"\r\n")
                if len(body) >= int(header[1:]) + 2:
                    return body[: int(header[1:])].decode()


def redis_info(url: str, section: str) -> dict[str, str]:
    lines = redis_command(url, "INFO", section).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


def redis_cpu(url: str) -> float:
    info = redis_info(url, "cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_calls(url: str) -> tuple[int, str]:
    """Commands Redis ran since the last CONFIG RESETSTAT (each command of a script counts),
    and the three that took the most of its time, with their milliseconds."""
    stats = {name.removeprefix("cmdstat_"): dict(f.split("=") for f in v.split(",")) for name, v in
             redis_info(url, "commandstats").items()}
    top = sorted(stats.items(), key=lambda kv: -float(kv[1]["usec"]))[:3]
    return (sum(int(v["calls"]) for v in stats.values()),
            ", ".join(f"{name} {float(v['usec']) / 1000:.0f} ms" for name, v in top))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process (all its threads) and of its children that ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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

    def cpu(self) -> float:
        return sum(process_cpu(w.pid) for w in self.procs)

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


@dataclass
class Timing:
    """Medians over the repeats: wall seconds, CPU seconds of everything that took part
    (this process and the commands it ran, the workers, redis-server), and that CPU by process."""

    wall: float
    cpu: float | None = None
    parts: dict[str, float] | None = None


def cpu_parts(url: str, workers: Workers | None) -> dict[str, float]:
    """CPU seconds so far of this process (and the commands it ran), redis-server and the workers."""
    return {"client": own_cpu(), "redis": redis_cpu(url), "workers": workers.cpu() if workers else 0.0}


def measure(run, repeat: int, url: str, workers: Workers | None = None) -> Timing:
    """Runs `run()` `repeat` times; the medians of its wall and CPU time (in all, and by process)."""
    walls, spent = [], []
    for _ in range(repeat):
        before = cpu_parts(url, workers)
        start = time.perf_counter()
        run()
        walls.append(time.perf_counter() - start)
        after = cpu_parts(url, workers)
        spent.append({name: after[name] - before[name] for name in before})
    parts = {name: statistics.median(s[name] for s in spent) for name in spent[0]}
    return Timing(statistics.median(walls), statistics.median(sum(s.values()) for s in spent), parts)


def counted(url: str, workers: Workers, run) -> tuple[int, int, str]:
    """Redis commands run, tasks that succeeded and the commands that took Redis the most
    time during one `run()` and the moment after (workers release a fit's shards once it returned)."""
    before = workers.succeeded()
    redis_command(url, "CONFIG", "RESETSTAT")
    run()
    time.sleep(0.5)
    calls, top = redis_calls(url)
    return calls, workers.succeeded() - before, top


def counts(text: str) -> list[int]:
    return [int(c) for c in text.split(",")]


def verdict(met: bool) -> str:
    return "MET" if met else "not met"


def print_scaling(title: str, threads: dict[int, Timing], workers: dict[int, Timing]) -> None:
    """Medians per thread count in one process and per worker count, with speed-ups,
    parallel efficiency, workers / threads against the targets, and the CPU the
    distributed run spent beyond the one in process (the queue's cost, which load does not hide)."""
    print(title)
    print(f"  ({FAIRNESS})")
    with_cpu = any(s.cpu is not None for s in [*threads.values(), *workers.values()])
    print("                                    wall s" + ("    CPU s" if with_cpu else ""))

    def cpu(s: Timing) -> str:
        return "" if s.cpu is None else f" {s.cpu:8.3f}"

    def parts(s: Timing) -> str:
        return "" if not s.parts else "   (" + ", ".join(f"{n} {v:.3f}" for n, v in s.parts.items() if v) + ")"

    for t, s in threads.items():
        print(f"  in process, {t:2d} thread(s)         {s.wall:8.3f}{cpu(s)}{parts(s)}")
    for c, s in workers.items():
        print(f"  {c:2d} worker(s) x 1 thread          {s.wall:8.3f}{cpu(s)}{parts(s)}")
    for c, s in workers.items():
        if c in threads and s.cpu is not None and threads[c].cpu:
            print(f"  CPU of {c} worker(s) / {c} thread(s): {s.cpu / threads[c].cpu:5.2f}")
    one = workers.get(1)
    for c, s in workers.items():
        if c == 1 or one is None:
            continue
        speedup, efficiency = one.wall / s.wall, one.wall / (c * s.wall)
        line = f"  1 -> {c:2d} workers: speed-up {speedup:5.2f}x, efficiency {efficiency:4.0%}"
        if c in threads:
            vs_threads = s.wall / threads[c].wall
            line += f", {c} workers / {c} threads {vs_threads:5.2f}"
            if c == 2:
                line += f"  (targets: >= 1.8x {verdict(speedup >= 1.8)}; <= 1.10 {verdict(vs_threads <= 1.10)})"
        if c >= 14:
            line += f"  (target >= 75% efficiency: {verdict(efficiency >= 0.75)})"
        print(line, flush=True)


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def add_kmeans_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, help="k-means part: rows (1,000,000; --quick 100,000)")
    parser.add_argument("--d", type=int, default=64, help="k-means part: columns")
    parser.add_argument("--k", type=int, default=32, help="k-means part: clusters")
    parser.add_argument("--iter", type=int, help="k-means part: Lloyd iterations (30; --quick 10)")
    parser.add_argument("--source", choices=["npy", "memory"], default="npy",
                        help="k-means part: the workers read a .npy file (default), or the array stored in Redis")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=counts, default=[1, 2], help="worker (and thread) counts, e.g. 1,2,4,8,14")
    parser.add_argument("--repeat", type=int, help="runs per measure, medians reported (3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each: a check that it works")


def settle_defaults(args: argparse.Namespace, **defaults: tuple) -> None:
    """Fills options left unset with their (full, quick) defaults."""
    for name, (full, quick) in {"repeat": (3, 1), **defaults}.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
