"""Cluster mode over TLS: `fc.init("rediss://...")` with a Redis that speaks TLS only and
requires client certificates, the certificates made by a CA generated for the test and
given through FERROCLUSTER_REDIS_CA / _CERT / _KEY, as for every command."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import ferrocluster as fc
from redis_support import requires_redis, start_redis
import test_runtime_tasks as tasks

pytestmark = [
    requires_redis,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed"),
]


def _certificates(directory):
    """A throwaway CA and the server and client certificates it signs (for 127.0.0.1)."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-days", "2", "-subj", "/CN=ferrocluster test CA", *key, "-keyout", "ca.key", "-out", "ca.crt")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-subj", "/CN=localhost", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt")
    return {
        "FERROCLUSTER_REDIS_CA": str(directory / "ca.crt"),
        "FERROCLUSTER_REDIS_CERT": str(directory / "client.crt"),
        "FERROCLUSTER_REDIS_KEY": str(directory / "client.key"),
    }


@pytest.fixture
def tls_cluster(tmp_path, monkeypatch):
    """A TLS-only redis-server and one Python worker; yields the rediss:// URL."""
    env = _certificates(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    redis, port = start_redis(
        tmp_path, "--tls-cert-file", str(tmp_path / "server.crt"), "--tls-key-file", str(tmp_path / "server.key"),
        "--tls-ca-cert-file", str(tmp_path / "ca.crt"), tls=True,
    )
    url = f"rediss://127.0.0.1:{port}/0"
    worker = None
    try:
        log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log", dir=tmp_path)[1])
        with log.open("w") as stderr:
            worker = subprocess.Popen(
                [sys.executable, "-m", "ferrocluster", "worker", "--redis", url, "--import", "test_runtime_tasks"],
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)}, stderr=stderr,
            )
        yield url
    finally:
        fc.shutdown()
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        redis.terminate()
        redis.wait(10)


def test_tasks_and_blobs_go_through_tls(tls_cluster):
    fc.init(tls_cluster)
    assert fc.get([tasks.add.remote(i, 1) for i in range(20)], timeout=60) == list(range(1, 21))
    big = np.arange(100_000, dtype=np.float32)  # over the inline limit: a blob kept in Redis
    np.testing.assert_array_equal(fc.get(tasks.scale.remote(big, 2.0), timeout=60), big * 2)

