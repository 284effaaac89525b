"""Ray's own microbenchmark definitions (ray/_private/ray_perf.py: "single client tasks sync"
and "single client tasks async"), run in the Ray environment by bench_queue.py; prints the
samples as JSON on the last line.

    ray-venv/bin/python bench/ray_tasks.py --repeats 5 --tasks 1000 --calls 200
"""

import argparse
import json
import time

import ray


@ray.remote
def small_value():
    return b"ok"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR")
    ray.get([small_value.remote() for _ in range(args.tasks)])  # warm the worker pool
    round_trip, throughput = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.calls):
            ray.get(small_value.remote())
        round_trip.append((time.perf_counter() - start) / args.calls)
        start = time.perf_counter()
        ray.get([small_value.remote() for _ in range(args.tasks)])
        throughput.append(args.tasks / (time.perf_counter() - start))
    ray.shutdown()
    print(json.dumps({"version": ray.__version__, "round_trip_s": round_trip, "tasks_per_s": throughput}))


if __name__ == "__main__":
    main()
