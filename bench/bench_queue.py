"""No-op task throughput from one Python client, with Ray's microbenchmark definitions:
a blocking round trip (submit one task, get it, repeat) and 1000 tasks submitted then
fetched. Measured in one run, interleaved where possible:

- ferrocluster embedded (tasks on threads of this process);
- ferrocluster cluster: a real redis-server and 2 `python -m ferrocluster worker` processes;
- ferrocluster cluster with the Rust `ferrocluster-worker` running its built-in `noop`;
- Ray 2.60 (`ray.init(num_cpus=2)`), in its own environment (`--ray-python`).

Prints medians and ratios against Ray and against the targets (cluster: round trip under
1 ms, at least 8k tasks/s, ahead of Ray), for our modes the CPU time each process spent
per task (client, redis-server, workers), and for the cluster modes Redis's own count of
the commands it ran per task and the time they took (INFO commandstats): on a loaded machine
wall-clock times swing with the neighbours' load, CPU time per task less, Redis's counts not
at all.

    python bench/bench_queue.py --ray-python .venv-ray/bin/python [--repeats 7] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(HERE.parent / "python_api" / "tests"))

import ferrocluster as fc  # noqa: E402
import queue_tasks  # noqa: E402
from ferrocluster.runtime import api  # noqa: E402
from redis_support import start_redis  # noqa: E402

RUST_QUEUE = "bench-rust"
CLUSTER = "ferrocluster cluster"
OPTIONS = {"max_retries": 0, "retry_exceptions": False, "priority": "normal"}


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
        redis, self.port = start_redis(self.tmp.name, "--appendonly", "yes", "--appendfsync", "everysec")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.processes = [redis]
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

    def redis(self, *command: str) -> str:
        """The reply of a Redis command that answers a simple or bulk string."""
        with socket.create_connection(("127.0.0.1", self.port)) as conn:
            conn.sendall(f"*{len(command)}\r\n".encode() + b"".join(
                f"${len(part.encode())}\r\n{part}\r\n".encode() for part in command))
            reply = conn.makefile("rb")
            head = reply.readline().decode().strip()
            if head.startswith("$"):
                return reply.read(int(head[1:]) + 2)[:-2].decode()
            return head[1:]

    def commandstats(self) -> dict[str, tuple[int, float]]:
        """Calls and microseconds per command since the last CONFIG RESETSTAT. Commands that
        scripts run count too, inside their EVALSHA's time."""
        stats = {}
        for line in self.redis("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, _, fields = line[len("cmdstat_"):].partition(":")
                values = dict(f.split("=") for f in fields.split(","))
                stats[name] = (int(values["calls"]), float(values["usec"]))
        return stats

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
        name: {"round_trip_s": [], "tasks_per_s": [], "cpu_rt": [], "cpu_tp": [], "redis_tp": []} for name, _, _ in modes
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
            cluster.redis("CONFIG", "RESETSTAT")
            samples[name]["tasks_per_s"].append(throughput(submit, tasks))
            after = cluster.cpu_s()
            samples[name]["redis_tp"].append(cluster.commandstats())
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


def print_commandstats(samples: dict[str, dict[str, Any]], tasks: int) -> None:
    """Redis's commands per task in the throughput measurement, summed over its samples: how
    many it ran (those of scripts included, EVALSHA itself not), the time of the scripts, and
    the commands that took the most time."""
    print(f"\nRedis commands per task, {tasks} submitted then fetched (INFO commandstats, all samples)")
    print(f"{'':<42}{'calls':>8}{'EVALSHA':>9}{'EVALSHA µs':>12}  top commands by µs per task")
    for mode, s in samples.items():
        if not mode.startswith(CLUSTER):
            continue
        total: dict[str, list[float]] = {}
        for stats in s["redis_tp"]:
            for name, (calls, usec) in stats.items():
                total.setdefault(name, [0, 0.0])
                total[name][0] += calls
                total[name][1] += usec
        n = tasks * len(s["redis_tp"])
        scripts = {"evalsha", "eval"}
        calls = sum(c for name, (c, _) in total.items() if name not in scripts) / n
        evalsha = sum(total.get(name, [0, 0.0])[0] for name in scripts) / n
        evalsha_us = sum(total.get(name, [0, 0.0])[1] for name in scripts) / n
        top = sorted(((usec / n, name) for name, (_, usec) in total.items() if name not in scripts), reverse=True)[:6]
        print(f"{mode:<42}{calls:8.1f}{evalsha:9.2f}{evalsha_us:12.1f}  "
              + ", ".join(f"{name} {usec:.1f}" for usec, name in top))


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
    print_commandstats(ours, args.tasks)
    print("\ntargets (cluster mode): round trip < 1 ms, >= 8000 tasks/s, ahead of Ray")
    for name, (rt, tps) in rows.items():
        if not name.startswith(CLUSTER):
            continue
        ahead = "-" if ray_row is None else ("yes" if rt < ray_row[0] and tps > ray_row[1] else "no")
        print(f"  {name:<40} round trip {'MET' if rt < 1e-3 else 'not met':<8} "
              f"throughput {'MET' if tps >= 8000 else 'not met':<8} ahead of Ray: {ahead}")


if __name__ == "__main__":
    main()
