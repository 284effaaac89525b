"""The real `ferrocluster-api` binary on a free loopback port, for the tests and the bench that
call it over HTTP: its data in a temporary folder, the test API keys, extra `ROCKET_*` settings."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "admin-key-for-contract-tests"
READ_KEY = "read-key-for-contract-tests"


def api_binary() -> Path:
    """The release binary `make api-binary` builds."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "release" / "ferrocluster-api"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: run `make api-binary`")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keys_setting() -> str:
    # Rocket reads environment values as TOML: an array of inline tables.
    return f'[{{key="{ADMIN_KEY}", role="admin"}}, {{key="{READ_KEY}", role="read"}}]'


class Server:
    """A running `ferrocluster-api`: its base URL, process and log."""

    def __init__(self, base: str, process: subprocess.Popen, log: Path, context: ssl.SSLContext | None) -> None:
        self.base = base
        self.process = process
        self.log = log
        self.context = context

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def json(self, method: str, path: str, document=None, key: str = ADMIN_KEY):
        body = None if document is None else json.dumps(document).encode()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data) if data else None


@contextlib.contextmanager
def running_server(data_dir: Path, settings: dict | None = None, context: ssl.SSLContext | None = None):
    """Starts the binary with its data in `data_dir` and `settings` as `ROCKET_<KEY>` values
    (TOML text), yields a `Server` once `/healthz` answers, and stops it on exit."""
    port = free_port()
    env = {
        **os.environ,
        "ROCKET_ADDRESS": "127.0.0.1",
        "ROCKET_PORT": str(port),
        "ROCKET_DATA_DIR": str(data_dir),
        "ROCKET_API_KEYS": keys_setting(),
        "ROCKET_LOG_LEVEL": "critical",
        "RUST_LOG": "warn",
    }
    env.update({f"ROCKET_{key.upper()}": value for key, value in (settings or {}).items()})
    log = data_dir.parent / f"{data_dir.name}-server.log"
    scheme = "https" if context else "http"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(api_binary())], env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"{scheme}://127.0.0.1:{port}", process, log, context)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if server.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ferrocluster-api did not come up:\n{log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(10)


def png(cls: int, seed: int, size: int = 32) -> bytes:
    """A size × size RGB PNG of class `cls` (horizontal, vertical or diagonal stripes) with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    t = (y, x, x + y)[cls % 3] + rng.integers(0, 8)
    grey = np.where((t // 4) % 2 == 0, 40, 210) + rng.integers(-20, 21, size=(size, size))
    rgb = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def images_json(images: list[tuple[str, bytes]]) -> dict:
    return {"images": [{"name": name, "data": base64.b64encode(data).decode()} for name, data in images]}


SMALL_FEATURES = {"size": [32, 32], "hog": {"orientations": 9, "pixels_per_cell": [8, 8], "cells_per_block": [2, 2]}}


def seed_model(server: Server, n: int = 12, k: int = 3, features: dict = SMALL_FEATURES) -> dict:
    """Uploads `n` labelled images, trains k-means and waits: the dataset, job and model ids."""
    images = [(f"img-{i}.png", png(i % 3, i, features["size"][0])) for i in range(n)]
    status, dataset = server.json("POST", "/v1/datasets?name=seed", images_json(images))
    assert status == 201, dataset
    request = {"dataset_id": dataset["id"], "k": k, "seed": 3, "features": features}
    status, job = server.json("POST", "/v1/models", request)
    assert status == 202, job
    deadline = time.monotonic() + 120
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = server.json("GET", f"/v1/jobs/{job['id']}", key=READ_KEY)[1]
    assert job["state"] == "succeeded", job
    return {"dataset": dataset["id"], "job": job["id"], "model": job["model_id"]}
