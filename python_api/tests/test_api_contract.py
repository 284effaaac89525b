"""The API contract, checked against the live `ferrocluster-api` binary: schemathesis generates
requests for every operation of its own `/openapi.json` (explicit examples, coverage of edge and
invalid values, fuzzing) with an admin key, then follows the document's links in sequences
(upload a dataset, get it, train on it, follow the job to its model, predict, delete), and every
response must be no 5xx and conform to the document — status code, content type, headers and
body — with invalid requests refused, an undeclared method answered 405 with `Allow`, and auth
enforced. A seeded dataset and model give the id routes real data: the document's operations are
given those ids as examples, and generated images are, most of the time, a real PNG.

Training jobs go to a real Redis work queue that no worker serves, so every job the phases create
stays `queued` until it is cancelled: a job is cancellable whenever a sequence reaches its cancel,
however fast training is, and the sequence then reads it back `cancelled`. The seeded model is
trained first by the same data folder's embedded executor.

schemathesis runs as its CLI (`schemathesis run`), all four phases. One check is left out:
`positive_data_acceptance` expects every schema-valid request to succeed, which an image API
cannot promise — a base64 string is schema-valid whether or not it holds a decodable image, and
a FeatureConfig's constraints span fields (extractor parameters against the image size, at
least one extractor on)."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from api_server import ADMIN_KEY, READ_KEY, images_json, png, running_server, seed_model
from redis_support import redis_server, requires_redis

# Bounded so the whole module stays under about three minutes on two loaded cores.
MAX_EXAMPLES = 15
MAX_STEPS = 10
STATEFUL_EXAMPLES = 40

# A real PNG offered for every generated image (schemathesis's dictionary for the `data` field), so
# generated uploads store datasets and the stateful phase can follow their links.
CONFIG = """
[dictionaries.png]
values = ["{png}"]

[parameters]
"body.images[*].data" = {{ dictionary = "png", probability = 0.8 }}

[phases.stateful]
max-steps = {max_steps}

# More sequences than examples elsewhere, so that many go from a dataset through training to a
# job's cancel and read.
[phases.stateful.generation]
max-examples = {stateful_examples}

# Only the document's own links, so the count of links followed is a count of ours.
[phases.stateful.inference]
algorithms = []

# `DELETE /v1/jobs/{{id}}` cancels and keeps the record, which `GET /v1/jobs/{{id}}` then answers
# (`cancelled`), as documented: no use after free.
[[operations]]
include-operation-id = "get_job"
checks.use_after_free.enabled = false

# With no worker on the queue the service is not ready: `/readyz` answers its documented 503, which
# must still conform to the document (status, content type, problem body).
[[operations]]
include-operation-id = "readyz"
checks.not_a_server_error.enabled = false
"""


pytestmark = requires_redis


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The service on a Redis queue with no worker (its jobs wait, `queued`), over a data folder
    holding a model the embedded executor trained."""
    folder = tmp_path_factory.mktemp("contract")
    with running_server(folder / "data") as embedded:
        ids = seed_model(embedded)
    with redis_server(folder) as url, running_server(folder / "data", {"redis_url": f'"{url}"'}) as server:
        server.ids = ids
        yield server


def with_seeded_examples(document: dict, ids: dict) -> dict:
    """The document with the seeded ids as examples of the `id` parameters (and cluster 0 for
    `c`) of every operation that reads, and a real PNG as the example of every JSON body of
    images, so the examples phase reaches real resources and successful answers. Deleting
    operations keep generated ids (schemathesis may still delete a seeded resource with an id it
    read from a listing: that is the API working, and later requests then get a conformant 404)."""
    document = copy.deepcopy(document)
    image_body = images_json([("example.png", png(2, 7))])
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        resource = next((name for name in ("dataset", "model", "job") if f"/{name}s/" in path), None)
        for method, operation in item.items():
            if method == "delete":
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body and "images" in schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]:
                body["example"] = image_body
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                if parameter["name"] == "id" and resource:
                    parameter["example"] = ids[resource]
                elif parameter["name"] == "c":
                    parameter["example"] = 0
    return document


def test_the_seeded_model_predicts_over_http(server):
    """The seeded model serves: predict over HTTP labels a real image."""
    status, answer = server.json(
        "POST", f"/v1/models/{server.ids['model']}/predict", images_json([("x.png", png(1, 99))]), key=READ_KEY
    )
    assert status == 200, answer
    assert answer["model_id"] == server.ids["model"]
    assert answer["predictions"][0]["name"] == "x.png"
    assert len(answer["predictions"][0]["distances"]) == 3


def test_every_operation_conforms_to_the_document(server, tmp_path):
    status, document = server.json("GET", "/openapi.json")
    assert status == 200
    operations = sum(len(item) for item in document["paths"].values())
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(with_seeded_examples(document, server.ids)))
    links = sum(
        len(response.get("links", {}))
        for item in document["paths"].values()
        for operation in item.values()
        for response in operation["responses"].values()
    )
    image = base64.b64encode(png(0, 5, 16)).decode()
    (tmp_path / "schemathesis.toml").write_text(CONFIG.format(png=image, max_steps=MAX_STEPS, stateful_examples=STATEFUL_EXAMPLES))
    # One worker: with two, hypothesis parses lambdas' source in both threads at once, which
    # CPython 3.11 can fail ("AST constructor recursion depth mismatch"); the run is short anyway.
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", str(schema), "--url", server.base,
        "--header", f"Authorization: Bearer {ADMIN_KEY}",
        # Every check runs by default; naming them all (`--checks all`) would override the
        # per-operation setting of the configuration.
        "--phases", "examples,coverage,fuzzing,stateful",
        "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(MAX_EXAMPLES), "--seed", "4", "--workers", "1", "--request-timeout", "30",
        "--generation-database", "none", "--no-color",
        "--report", "ndjson", "--report-ndjson-path", str(tmp_path / "events.ndjson"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    report = result.stdout + result.stderr
    # The service outlived every request; its own log says why if it did not, or what it did.
    log = server.log.read_text(errors="replace")[-10_000:]
    assert server.process.poll() is None, f"ferrocluster-api exited ({server.process.returncode}):\n{log}"
    assert result.returncode == 0, report[-30_000:] + "\n--- service log ---\n" + log
    assert f"{operations} selected / {operations} total" in report, report[-5_000:]
    assert f"Tested: {operations}" in report, report[-5_000:]
    # The stateful phase ran sequences through the document's links, most of them followed.
    covered = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", report)
    assert covered, report[-5_000:]
    assert int(covered[2]) == links > 0, report[-5_000:]
    assert int(covered[1]) >= links // 3, report[-5_000:]
    # Jobs go create → get → cancel → get, as datasets and models go create → get → delete: jobs
    # are cancelled through links, and a job cancelled so is then read through a link: `cancelled`.
    steps = stateful_steps(tmp_path / "events.ndjson")
    followed = {link for _, link, _, _ in steps}
    for link in (
        "POST /v1/datasets -> [201] TrainModel -> POST /v1/models",
        "POST /v1/models -> [202] GetJob -> GET /v1/jobs/{id}",
        "POST /v1/models -> [202] CancelJob -> DELETE /v1/jobs/{id}",
        "POST /v1/datasets -> [201] DeleteDataset -> DELETE /v1/datasets/{id}",
    ):
        assert link in followed, sorted(followed)
    cancelled, read_after = set(), []
    for scenario, link, status, body in steps:
        if link.endswith("-> DELETE /v1/jobs/{id}") and status == 200:
            cancelled.add((scenario, body["id"]))
        elif link.endswith("-> GET /v1/jobs/{id}") and status == 200 and (scenario, body["id"]) in cancelled:
            read_after.append(body)
    assert read_after, f"no job read after its cancel: {len(cancelled)} cancelled, {sorted(followed)}"
    assert all(body["state"] == "cancelled" for body in read_after), read_after


def stateful_steps(events: Path) -> list[tuple[int, str, int, dict | None]]:
    """The steps of the stateful phase that followed a link, in order, from schemathesis's event
    log: the sequence's number, the link (`SOURCE -> [status] Name -> TARGET`), the answer's status
    and its JSON body."""
    steps = []
    with events.open() as lines:
        for scenario, line in enumerate(lines):
            finished = json.loads(line).get("ScenarioFinished")
            if not finished or finished["phase"] != "stateful":
                continue
            recorder = finished["recorder"]
            for case_id, case in recorder.get("cases", {}).items():
                response = recorder["interactions"].get(case_id, {}).get("response")
                if not (case.get("transition") and case.get("is_transition_applied") and response):
                    continue
                content = base64.b64decode(response["content"]["$base64"]) if response.get("content") else b""
                try:
                    body = json.loads(content)
                except ValueError:
                    body = None
                steps.append((scenario, case["transition"]["id"], int(response["status_code"]), body))
    return steps


def test_the_docs_page_renders_every_operation_offline(server, tmp_path):
    """`/docs` in a real browser (headless Chromium): the page's own script fetches
    `/openapi.json` and lists every operation, with every host but the service's unresolvable,
    and the browser's network log shows no request to any other origin."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run scripts/install-system-deps.sh"
    netlog = tmp_path / "netlog.json"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-pings",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--log-net-log={netlog}",
        # Virtual time runs until the page is idle: its fetch has answered and its script rendered.
        "--virtual-time-budget=30000", "--dump-dom", f"{server.base}/docs",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    dom = result.stdout
    assert result.returncode == 0 and "</html>" in dom, result.stderr[-3_000:]
    status, document = server.json("GET", "/openapi.json")
    assert status == 200
    expected = sorted((method, path) for path, item in document["paths"].items() for method in item)
    rendered = re.findall(r'<details class="op"><summary><span class="method (\w+)">\1</span> <span class="path">([^<]+)</span>', dom)
    assert sorted(rendered) == expected, dom[:5_000]
    title = f'<h1 id="title">{document["info"]["title"]} {document["info"]["version"]}</h1>'
    assert title in dom, dom[:2_000]
    urls = page_requests(netlog, "http://127.0.0.1")
    assert f"{server.base}/openapi.json" in urls, urls
    assert all(url.startswith(server.base + "/") for url in urls), urls


def page_requests(netlog: Path, site: str) -> set[str]:
    """The URLs a page of `site` requested, from Chromium's network log: the requests whose
    network isolation key is that site's (the browser's own, such as its update checks, have
    none or their own)."""
    text = netlog.read_text()
    # Chromium may exit before closing the event list.
    log = json.loads(text) if text.rstrip().endswith("}") else json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [event.get("params", {}) for event in log["events"] if event["type"] == start_job]
    return {start["url"] for start in starts if start.get("network_isolation_key", "").startswith(site + " ")}
