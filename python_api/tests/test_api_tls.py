"""HTTPS from the real `ferrocluster-api` binary (built with its default `tls` feature): a
throwaway certificate authority and server certificate are made for each run (nothing that
expires is kept), Rocket serves with them from its `tls` setting, and a client that trusts only
that authority talks to it; a client that does not trust it is refused, and plain HTTP gets no
answer on the TLS port."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest
import trustme

from api_server import READ_KEY, running_server


@pytest.fixture(scope="module")
def authority():
    return trustme.CA()


@pytest.fixture(scope="module")
def https_server(tmp_path_factory, authority):
    folder = tmp_path_factory.mktemp("tls")
    cert = authority.issue_cert("127.0.0.1", "localhost")
    chain, key = folder / "chain.pem", folder / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    settings = {"tls": f'{{certs="{chain}", key="{key}"}}'}
    with running_server(folder / "data", settings, context=context) as server:
        yield server


def test_the_api_answers_over_https_with_the_configured_certificate(https_server):
    assert https_server.base.startswith("https://")
    status, headers, body = https_server.request("GET", "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, document = https_server.json("GET", "/v1/datasets", key=READ_KEY)
    assert (status, document) == (200, [])


def test_a_client_that_does_not_trust_the_certificate_is_refused(https_server):
    port = int(https_server.base.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/healthz")
    connection.close()


def test_plain_http_gets_no_answer_on_the_tls_port(https_server):
    port = int(https_server.base.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        connection.request("GET", "/healthz")
        connection.getresponse()
    connection.close()
