"""No-op task throughput from one Python client, with Ray's microbenchmark definitions:
a blocking round trip (submit one task, get it, repeat) and 1000 tasks submitted then
fetched. Measured in one run, interleaved where possible:

- ferrocluster embedded (tasks on threads of this process);
- ferrocluster cluster: a real redis-server and 2 `python -m ferrocluster worker` processes;
- ferrocluster cluster with the Rust `ferrocluster-worker` running its built-in `noop`;
- Ray 2.60 (`ray.init(num_cpus=2)`), in its own environment (`--ray-python`).

Prints medians and ratios against Ray and against the targets (cluster: round trip under
1 ms, at least 8k tasks/s, ahead of Ray), and for our modes the CPU time each process spent
per task (client, redis-server, workers): on a loaded machine wall-clock times swing with the
neighbours' load, CPU time per task much less.

    python bench/bench_queue.py --ray-python .venv-ray/bin/python [--repeats 7] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ferrocluster as fc  # noqa: E402
import queue_tasks  # noqa: E402
from ferrocluster.runtime import api  # noqa: E402

RUST_QUEUE = "bench-rust"
CLUSTER = "ferrocluster cluster"
OPTIONS = {"max_retries": 0, "retry_exceptions": False, "priority": "normal"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_binary() -> str:
    target = Path(os.environ.get("CARGO_TARGET_DIR", HERE.parent / "target"))
    binary = target / "release" / "ferrocluster-worker"
    if not binary.exists():
        sys.exit(f"{binary} is missing: cargo build --release -p ferrocluster-core --bin ferrocluster-worker")
    return str(binary)


class Cluster:
    """redis-server (AOF everysec, as docs/queue.md recommends), Python and Rust workers."""

    def __init__(self, python_workers: int, rust_concurrency: int) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        port = _free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.processes = [subprocess.Popen(
            [redis, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.tmp.name, "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=subprocess.DEVNULL,
        )]
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.05)
        env = {**os.environ, "PYTHONPATH": str(HERE), "RUST_LOG": "warn"}
        for _ in range(python_workers):
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "ferrocluster", "worker", "--redis", self.url, "--import", "queue_tasks"],
                env=env, stderr=subprocess.DEVNULL,
            ))
        self.processes.append(subprocess.Popen(
            [_worker_binary(), "--redis", self.url, "--queues", RUST_QUEUE, "--concurrency", str(rust_concurrency)],
            env=env, stderr=subprocess.DEVNULL,
        ))

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by this client and by each kind of server process."""
        redis, *python_workers, rust_worker = self.processes
        return {
            "client": time.process_time(),
            "redis": _process_cpu_s(redis.pid),
            "Python workers": sum(_process_cpu_s(p.pid) for p in python_workers),
            "Rust worker": _process_cpu_s(rust_worker.pid),
        }

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(30)
        self.tmp.cleanup()


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trip(submit: Callable[[], Any], calls: int) -> float:
    """Seconds per blocking round trip: submit one, get it, repeat."""
    start = time.perf_counter()
    for _ in range(calls):
        fc.get(submit())
    return (time.perf_counter() - start) / calls


def throughput(submit: Callable[[], Any], tasks: int) -> float:
    """Tasks per second: `tasks` submitted, then all fetched."""
    start = time.perf_counter()
    fc.get([submit() for _ in range(tasks)])
    return tasks / (time.perf_counter() - start)


def rust_noop() -> Any:
    return api.backend().submit_task(RUST_QUEUE, "noop", {}, OPTIONS)


def measure_ours(cluster: Cluster, repeats: int, tasks: int, calls: int) -> dict[str, dict[str, list[float]]]:
    modes: list[tuple[str, Callable[[], None], Callable[[], Any]]] = [
        ("ferrocluster embedded", lambda: fc.init(), queue_tasks.noop.remote),
        (f"{CLUSTER}, Python workers", lambda: fc.init(cluster.url), queue_tasks.noop.remote),
        (f"{CLUSTER}, Rust worker noop", lambda: fc.init(cluster.url), rust_noop),
    ]
    samples: dict[str, dict[str, Any]] = {
        name: {"round_trip_s": [], "tasks_per_s": [], "cpu_rt": [], "cpu_tp": []} for name, _, _ in modes
    }
    for name, start, submit in modes:  # warm-up: workers joined, scripts loaded, threads started
        fc.shutdown()
        start()
        fc.get([submit() for _ in range(tasks)], timeout=120)
    for _ in range(repeats):  # interleaved, so that machine noise spreads over every mode
        for name, start, submit in modes:
            fc.shutdown()
            start()
            before = cluster.cpu_s()
            samples[name]["round_trip_s"].append(round_trip(submit, calls))
            middle = cluster.cpu_s()
            samples[name]["tasks_per_s"].append(throughput(submit, tasks))
            after = cluster.cpu_s()
            samples[name]["cpu_rt"].append({k: (middle[k] - before[k]) / calls for k in before})
            samples[name]["cpu_tp"].append({k: (after[k] - middle[k]) / tasks for k in before})
    fc.shutdown()
    return samples


def print_cpu(samples: dict[str, dict[str, Any]]) -> None:
    """Medians of the CPU time per task of each process, for both measurements."""
    for key, title in (("cpu_rt", "blocking round trip"), ("cpu_tp", "1000 submitted then fetched")):
        names = list(next(iter(samples.values()))[key][0])
        print(f"\nCPU time per task, {title} (µs; medians)")
        print(f"{'':<42}" + "".join(f"{n:>16}" for n in [*names, "total"]))
        for mode, s in samples.items():
            per = {n: statistics.median(c[n] for c in s[key]) * 1e6 for n in names}
            total = statistics.median(sum(c.values()) for c in s[key]) * 1e6
            print(f"{mode:<42}" + "".join(f"{per[n]:16.0f}" for n in names) + f"{total:16.0f}")


def measure_ray(python: str, repeats: int, tasks: int, calls: int) -> dict[str, Any]:
    out = subprocess.run(
        [python, str(HERE / "ray_tasks.py"), "--repeats", str(repeats), "--tasks", str(tasks), "--calls", str(calls)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray-python", help="python of an environment with ray==2.60.0 (skipped when absent)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200, help="blocking round trips per sample")
    args = parser.parse_args()

    cluster = Cluster(python_workers=2, rust_concurrency=2)
    try:
        ours = measure_ours(cluster, args.repeats, args.tasks, args.calls)
    finally:
        cluster.close()
    ray = measure_ray(args.ray_python, args.repeats, args.tasks, args.calls) if args.ray_python else None

    rows = {name: (statistics.median(s["round_trip_s"]), statistics.median(s["tasks_per_s"])) for name, s in ours.items()}
    if ray is not None:
        rows[f"Ray {ray['version']} (num_cpus=2)"] = (statistics.median(ray["round_trip_s"]), statistics.median(ray["tasks_per_s"]))
    ray_row = rows.get(f"Ray {ray['version']} (num_cpus=2)") if ray else None
    print(f"\nmedians of {args.repeats} samples; {os.cpu_count()} CPUs; round trip over {args.calls} calls, "
          f"throughput over {args.tasks} tasks")
    print(f"{'':<42}{'round trip':>12}{'vs Ray':>9}{'tasks/s':>11}{'vs Ray':>9}")
    for name, (rt, tps) in rows.items():
        vs_rt = f"{ray_row[0] / rt:8.2f}x" if ray_row else "        -"
        vs_tps = f"{tps / ray_row[1]:8.2f}x" if ray_row else "        -"
        print(f"{name:<42}{rt * 1e3:9.3f} ms{vs_rt}{tps:11.0f}{vs_tps}")
    print_cpu(ours)
    print("\ntargets (cluster mode): round trip < 1 ms, >= 8000 tasks/s, ahead of Ray")
    for name, (rt, tps) in rows.items():
        if not name.startswith(CLUSTER):
            continue
        ahead = "-" if ray_row is None else ("yes" if rt < ray_row[0] and tps > ray_row[1] else "no")
        print(f"  {name:<40} round trip {'MET' if rt < 1e-3 else 'not met':<8} "
              f"throughput {'MET' if tps >= 8000 else 'not met':<8} ahead of Ray: {ahead}")


if __name__ == "__main__":
    main()
