"""Shared fixtures: a fresh Postgres database and a Redis per test run, real servers only.

Uses the servers at 127.0.0.1:5432 / :6379 when they answer (CI, dev machines), and the
embedded ones otherwise (a fresh machine), so the suite runs the same everywhere.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from bench.stack import free_port  # noqa: F401  (tests import it from here)
from records.store import Store

SYSTEM_PG = os.environ.get("LIVECUT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SYSTEM_REDIS = os.environ.get("LIVECUT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_tool(name: str) -> str:
    """Test peers are required, never skipped: fail loudly when one is missing."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"required test peer {name!r} is not installed (run deploy/test.sh, which installs it)")
    return path


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory) -> str:
    """DSN of a server where tests may create databases."""
    if _port_open("127.0.0.1", 5432):
        return SYSTEM_PG
    import tempfile

    from records.embedded import start_postgres

    # Not under pytest's tmp dir: as root, the server runs as its own user, and pytest keeps
    # /tmp/pytest-of-root private to root.
    dsn, _handle = start_postgres(Path(tempfile.mkdtemp(prefix="livecut-test-pg-")))
    return dsn


def _admin(dsn: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _with_database(dsn: str, name: str) -> str:
    base, _, query = dsn.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


@pytest.fixture
def pg_dsn(pg_admin_dsn) -> str:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"livecut_test_{secrets.token_hex(4)}"
    _admin(pg_admin_dsn, f"CREATE DATABASE {name}")
    yield _with_database(pg_admin_dsn, name)
    _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def store(pg_dsn) -> Store:
    s = await Store.connect(pg_dsn)
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    if _port_open("127.0.0.1", 6379):
        yield SYSTEM_REDIS
        return
    from records.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
async def redis(redis_url):
    """A Redis client for one test (tests/test_feed.py has its own, named one)."""
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return require_tool("ffmpeg")


@pytest.fixture(scope="session")
def espeak() -> str:
    return require_tool("espeak-ng")


@contextmanager
def stack_on_fresh_database(data_dir: Path, pg_admin_dsn: str, redis_url: str, *, extra_args: list[str], **kwargs):
    """A real `livecut up` on a database of its own, stopped with Ctrl-C (asserted clean) and
    its database dropped afterwards. ``stack.database_url`` and ``stack.db_name`` say where."""
    from bench.stack import LivecutProcess

    name = f"livecut_e2e_{secrets.token_hex(4)}"
    _admin(pg_admin_dsn, f"CREATE DATABASE {name}")
    stack = LivecutProcess(
        data_dir, database_url=_with_database(pg_admin_dsn, name), redis_url=redis_url, extra_args=extra_args, **kwargs
    )
    stack.database_url, stack.db_name = _with_database(pg_admin_dsn, name), name
    try:
        yield stack.start()
    finally:
        code = stack.stop()
        _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert code == 0, f"livecut up exited with {code} on SIGINT:\n{stack.log_tail()}"
    assert not stack.leftovers, f"processes left after Ctrl-C: {stack.leftovers}"


@pytest.fixture(scope="session")
def livecut_stack(tmp_path_factory, pg_admin_dsn, redis_url):
    """One real `livecut up` (Ray, gateway, RTMP ingest, supervisor) shared by the e2e tests,
    on a fresh database. Private URLs are allowed so tests can serve media from loopback."""
    with stack_on_fresh_database(
        tmp_path_factory.mktemp("stack") / "data", pg_admin_dsn, redis_url,
        extra_args=["--allow-private-urls", "--heartbeat-timeout", "10", "--streams-per-node", "12"],
    ) as stack:
        yield stack


CHROMIUM = "/usr/bin/chromium"  # Debian's; nothing is downloaded (playwright install cannot work here)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright, one per test module."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"required test peer {CHROMIUM} is not installed (run deploy/test.sh, which installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()
