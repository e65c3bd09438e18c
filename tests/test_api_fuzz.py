"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis), with
and without a key: no 5xx, every answer as documented, every error in the one error shape.
Bounded here; ``python -m bench.api_fuzz`` runs the long version."""
from __future__ import annotations

import pytest

from bench.api_fuzz import KEY, UNLIMITED, fuzz, fuzz_workflows
from bench.gateway_server import serve_gateway
from conftest import _admin, _with_database, free_port
from records.settings import Settings

EXAMPLES = 12  # per operation and key mode


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory, pg_admin_dsn, redis_url):
    name = "livecut_fuzz"
    _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(pg_admin_dsn, f"CREATE DATABASE {name}")
    opts = Settings(data_dir=str(tmp_path_factory.mktemp("fuzz")), api_key=KEY, port=free_port(), **UNLIMITED)
    with serve_gateway(opts, _with_database(pg_admin_dsn, name), redis_url) as url:
        yield url


def test_api_fuzz_with_admin_key(gateway_url):
    answers = fuzz(gateway_url, KEY, EXAMPLES)
    accepted = {op for (op, cls) in answers if cls == "2xx"}
    # The schema describes the bodies well enough that generated requests reach the handlers.
    assert {"POST /api/channels", "GET /api/channels", "GET /api/clips", "POST /api/keys"} <= accepted, answers


def test_api_fuzz_without_key(gateway_url):
    answers = fuzz(gateway_url, None, EXAMPLES)
    # Without a key nothing is reached but tus' capability discovery (OPTIONS, public by protocol).
    assert answers and all(cls == "4xx" or op.startswith("OPTIONS ") for (op, cls) in answers), answers


def test_api_workflows_follow_the_schemas_links(gateway_url):
    answers = fuzz_workflows(gateway_url, KEY, 8)
    accepted = {op for (op, cls) in answers if cls == "2xx"}
    # ids returned by create operations reach the routes that take them, through the links
    assert accepted & {"GET /api/channels/{channel_id}", "DELETE /api/channels/{channel_id}",
                       "POST /api/channels/{channel_id}/stream-key/rotate", "DELETE /api/keys/{key_id}"}, answers
