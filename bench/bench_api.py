"""Inference over HTTP on loopback: `POST /v1/models/{id}/predict` with one 64×64 PNG, from load
generators in other processes than the servers, measured in one run on:

- ferrocluster-api with dynamic batching on (the default), on with one batch computed at once
  (`max_concurrent_batches = 1`), and off;
- the anchor: Ray Serve 2.60 + FastAPI wrapping scikit-image HOG and scikit-learn KMeans
  (`@serve.batch(max_batch_size=10, batch_wait_timeout_s=0.01)`, `max_ongoing_requests=5`),
  in its own environment (`--ray-python`, see `ray_serve_predict.py`).

Each gets the same model shape (k-means, k=10, on the HOG features of the same 64×64 images)
and the same request body. Two loads:

- closed loop (throughput): wrk keeps `--connections` requests outstanding for `--seconds`;
- open loop (latency): requests sent at a fixed `--rate` whatever the answers, latency counted
  from each request's scheduled time (no coordinated omission).

Prints requests/s and p50/p99 latency, the ratios against Ray Serve, and the targets (at least
10× Ray Serve's throughput at a lower p99; p99 under 10 ms at 200 requests/s). Wall-clock
numbers on a shared machine are noisy: compare the ratios.

    python bench/bench_api.py --ray-python .venv-ray/bin/python [--seconds 10] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python_api" / "tests"))

from api_server import READ_KEY, free_port, images_json, png, running_server, seed_model  # noqa: E402

K = 10
TRAIN_IMAGES = 200
FEATURES = {"size": [64, 64], "hog": {"orientations": 9, "pixels_per_cell": [8, 8], "cells_per_block": [2, 2]}}


class RayServe:
    """`ray_serve_predict.py` in Ray's interpreter, serving until closed."""

    def __init__(self, python: str, image_dir: Path, port: int) -> None:
        self.process = subprocess.Popen(
            [python, str(HERE / "ray_serve_predict.py"), "--images", str(image_dir), "--k", str(K), "--port", str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        )
        for line in self.process.stdout:
            if line.strip() == "READY":
                break
        else:
            raise RuntimeError("Ray Serve did not start")
        self.base = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- closed loop: wrk -------------------------------------------------------------------------

WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = [[{body}]]
"""


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def closed_loop(url: str, body: str, connections: int, seconds: int, tmp: Path) -> dict:
    """wrk's requests/s and latency percentiles with `connections` requests always outstanding."""
    script = tmp / "predict.lua"
    script.write_text(WRK_SCRIPT.format(key=READ_KEY, body=body))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    percentile = {p: _seconds(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M)}
    if len(percentile) < 2:
        print(f"    wrk gave no latency distribution:\n{out}", flush=True)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": percentile.get("50", float("nan")), "p99": percentile.get("99", float("nan")),
        "failed": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


# ---- open loop: a fixed-rate client -------------------------------------------------------------

async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _open_loop(host: str, port: int, request: bytes, rate: float, seconds: float, timeout: float) -> dict:
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    failed = 0

    async def one(scheduled: float) -> None:
        nonlocal failed
        connection = idle.pop() if idle else await asyncio.open_connection(host, port)
        try:
            status = await asyncio.wait_for(_exchange(*connection, request), timeout)
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
            connection[1].close()
            failed += 1
            return
        latencies.append(time.perf_counter() - scheduled)
        if status != 200:
            failed += 1
        idle.append(connection)

    loop_start = time.perf_counter() + 0.1
    n = int(rate * seconds)
    tasks = []
    for i in range(n):
        scheduled = loop_start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")  # noqa: E731
    return {"sent": n, "p50": pick(0.50), "p99": pick(0.99), "failed": failed}


def open_loop(base: str, path: str, body: str, rate: float, seconds: float) -> dict:
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {READ_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    return asyncio.run(_open_loop(host, int(port), request, rate, seconds, timeout=10.0))


# ---- the run ------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, base: str, path: str, body: str, args: argparse.Namespace, tmp: Path,
            pid: int | None = None) -> dict:
    """Both loads; with the server's `pid`, also its CPU time per request under the closed loop,
    which a machine busy with other work does not skew as it does wall-clock throughput."""
    # A short warm-up (first requests load the model, start threads, JIT nothing but caches).
    closed_loop(base + path, body, 4, 2, tmp)
    cpu_before = cpu_seconds(pid) if pid else float("nan")
    result = {"name": name, "closed": closed_loop(base + path, body, args.connections, args.seconds, tmp)}
    c = result["closed"]
    c["cpu_ms"] = (cpu_seconds(pid) - cpu_before) * 1e3 / (c["rps"] * args.seconds) if pid else float("nan")
    result["open"] = open_loop(base, path, body, args.rate, args.seconds)
    o = result["open"]
    print(f"  {name:<32} {c['rps']:>9.0f} req/s  p50 {c['p50'] * 1e3:7.2f} ms  p99 {c['p99'] * 1e3:8.2f} ms"
          f"  CPU {c['cpu_ms']:6.3f} ms/req  | at {args.rate:.0f}/s: p50 {o['p50'] * 1e3:7.2f} ms"
          f"  p99 {o['p99'] * 1e3:8.2f} ms  (failed {c['failed']} + {o['failed']})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray-python", help="Ray 2.60's interpreter (the anchor); without it Ray is skipped")
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run")
    parser.add_argument("--connections", type=int, default=32, help="outstanding requests of the closed loop")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s of the open loop")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: scripts/install-system-deps.sh wrk")

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    image_dir = tmp / "images"
    image_dir.mkdir()
    for i in range(TRAIN_IMAGES):
        (image_dir / f"img-{i:03}.png").write_bytes(png(i % 3, i, 64))
    body = json.dumps(images_json([("query.png", png(1, 10_001, 64))]))
    print(f"predict on one 64×64 PNG ({len(body)} bytes of JSON), k={K} over {TRAIN_IMAGES} images; "
          f"closed loop: wrk, {args.connections} connections, {args.seconds} s; open loop: {args.rate:.0f} req/s, "
          f"{args.seconds} s; {os.cpu_count()} CPUs shared by the servers and the load generators")
    results = {}
    try:
        # Batching on, on and one batch at a time (the policy before `max_concurrent_batches`), off.
        configurations = {
            "ferrocluster batching on": {"batching": "true"},
            "ferrocluster one batch at once": {"batching": "true", "max_concurrent_batches": "1"},
            "ferrocluster batching off": {"batching": "false"},
        }
        for i, (name, settings) in enumerate(configurations.items()):
            with running_server(tmp / f"data-{i}", settings) as server:
                ids = seed_model(server, n=TRAIN_IMAGES, k=K, features=FEATURES)
                path = f"/v1/models/{ids['model']}/predict"
                results[name] = measure(name, server.base, path, body, args, tmp, server.process.pid)
        if args.ray_python:
            ray = RayServe(args.ray_python, image_dir, free_port())
            try:
                results["ray"] = measure("Ray Serve + FastAPI", ray.base, "/v1/models/m/predict", body, args, tmp)
            finally:
                ray.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ours, off = results["ferrocluster batching on"], results["ferrocluster batching off"]
    single = results["ferrocluster one batch at once"]
    cpu = lambda r: r["closed"]["cpu_ms"]  # noqa: E731
    print(f"batching on vs one batch at once: throughput {ours['closed']['rps'] / single['closed']['rps']:.2f}×, "
          f"CPU per request {cpu(ours) / cpu(single):.2f}×")
    print(f"batching on vs off: CPU per request {cpu(ours) / cpu(off):.2f}× (target: ≤ 1×)")
    print(f"batching on vs off: throughput {ours['closed']['rps'] / off['closed']['rps']:.2f}×, "
          f"closed-loop p99 {off['closed']['p99'] / ours['closed']['p99']:.2f}× lower, "
          f"p99 at {args.rate:.0f}/s {off['open']['p99'] / ours['open']['p99']:.2f}× lower "
          f"(target: throughput ≥ 1×)")
    if "ray" in results:
        ray = results["ray"]
        for name in ("ferrocluster batching on", "ferrocluster batching off"):
            r = results[name]
            print(f"{name} vs Ray Serve: throughput {r['closed']['rps'] / ray['closed']['rps']:.1f}×, "
                  f"closed-loop p99 {ray['closed']['p99'] / r['closed']['p99']:.1f}× lower, "
                  f"p99 at {args.rate:.0f}/s {ray['open']['p99'] / r['open']['p99']:.1f}× lower")
        ratio = ours["closed"]["rps"] / ray["closed"]["rps"]
        lower = ours["closed"]["p99"] < ray["closed"]["p99"]
        print(f"target ≥10× Ray Serve's throughput at a lower p99: {ratio:.1f}×, p99 lower: {lower} → "
              f"{'met' if ratio >= 10 and lower else 'not met'}")
    p99 = ours["open"]["p99"] * 1e3
    print(f"target p99 < 10 ms at {args.rate:.0f} req/s: {p99:.2f} ms → {'met' if p99 < 10 else 'not met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
