"""Property-based fuzzing of the REST API from its OpenAPI document (schemathesis).

Serves the gateway alone (no Ray) on a fresh Postgres database and Redis, then generates
requests for every documented operation, once with the admin key and once with none, and
checks every answer: no 5xx, the status and body as documented, every error in the one
error shape. tests/test_api_fuzz.py runs a bounded number of cases; this runs more:

    python -m bench.api_fuzz [--examples 200] [--json]

The baseline is the keyless run (every request stops at authentication), measured in the
same run; the figure is how many cases a second the authenticated run gets through
relative to it, and the count of failures, which must be 0.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter

import asyncpg
import schemathesis
from hypothesis import HealthCheck, given, settings

from bench.gateway_server import serve_gateway
from bench.stack import free_port
from records.settings import Settings

KEY = "fuzz-admin-key-5c1d"
UNLIMITED = {"rate_limit": 1_000_000, "media_rate_limit": 1_000_000, "connect_rate_limit": 1_000_000}  # fuzz the API, not the limiter


@schemathesis.check
def error_shape(ctx, response, case) -> None:
    """Every 4xx/5xx is ``{"error": {"code": str, "message": str}}``, documented or not."""
    if response.status_code < 400 or case.method.upper() == "HEAD":  # HEAD answers carry no body
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} with a body that is not JSON: {response.content[:200]!r}") from None
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error shape: {body!r}"
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], f"error without a code: {body!r}"
    assert isinstance(err.get("message"), str) and err["message"], f"error without a message: {body!r}"


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.status_code_conformance,
    error_shape,
]


def fuzz(base_url: str, key: str | None, examples: int, *, seed_random: bool = False) -> Counter:
    """Run up to ``examples`` generated cases per operation; returns how many answers of
    each (operation, status class) came back. A failed check raises schemathesis' report of
    the case, with a curl line to replay it."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    answers: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=not seed_random, database=None)
        def run(case) -> None:
            response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
            answers[(operation.label, f"{response.status_code // 100}xx")] += 1

        run()
    return answers


def fuzz_workflows(base_url: str, key: str, scenarios: int, *, seed_random: bool = False) -> Counter:
    """Schemathesis' stateful run: sequences of calls that follow the schema's links (create a
    channel, then get, rotate, list its clips and delete it; submit a job, then get and
    cancel it; create a key, then revoke it), every answer checked as in ``fuzz``."""
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    answers: Counter = Counter()

    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case) -> dict:
            return {"base_url": base_url, "headers": headers, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            answers[(case.operation.label, f"{response.status_code // 100}xx")] += 1
            case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs=kwargs)

    Workflow.run(settings=settings(max_examples=scenarios, stateful_step_count=6, deadline=None,
                                   suppress_health_check=list(HealthCheck), derandomize=not seed_random,
                                   database=None))
    return answers


async def _fresh_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    head, _, _ = admin_dsn.rpartition("/")
    return f"{head}/{name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="cases per operation and key mode; a quarter as many linked workflows (default 200)")
    parser.add_argument("--database-url", default=os.environ.get("LIVECUT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("LIVECUT_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)

    dsn = asyncio.run(_fresh_database(args.database_url, "livecut_bench_fuzz"))
    figures: dict = {"examples_per_operation": args.examples}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as data_dir:
        opts = Settings(data_dir=data_dir, api_key=KEY, port=free_port(), **UNLIMITED)
        with serve_gateway(opts, dsn, args.redis_url) as url:
            for mode, key in (("no_key", None), ("admin_key", KEY)):
                started = time.perf_counter()
                try:
                    answers = fuzz(url, key, args.examples, seed_random=True)
                except Exception as exc:  # noqa: BLE001 - the report is the figure
                    answers = Counter()
                    failures.append(f"{mode}: {exc}")
                elapsed = time.perf_counter() - started
                cases = sum(answers.values())
                accepted = sum(n for (_op, cls), n in answers.items() if cls == "2xx")
                figures[mode] = {"cases": cases, "accepted_2xx": accepted, "seconds": round(elapsed, 1),
                                 "cases_per_second": round(cases / elapsed, 1) if cases > 0 else 0,
                                 "operations_reaching_2xx": len({op for (op, cls) in answers if cls == "2xx"})}
            started = time.perf_counter()
            try:
                answers = fuzz_workflows(url, KEY, max(1, args.examples // 4), seed_random=True)
            except Exception as exc:  # noqa: BLE001 - the report is the figure
                answers = Counter()
                failures.append(f"workflows: {exc}")
            figures["workflows"] = {
                "calls": sum(answers.values()), "seconds": round(time.perf_counter() - started, 1),
                "accepted_2xx": sum(n for (_op, cls), n in answers.items() if cls == "2xx"),
                "operations_reaching_2xx": len({op for (op, cls) in answers if cls == "2xx"}),
            }
    base, authed = figures["no_key"]["cases_per_second"], figures["admin_key"]["cases_per_second"]
    figures["authenticated_rate_vs_keyless"] = round(authed / base, 2) if base else None
    figures["failures"] = failures
    if args.json:
        print(json.dumps(figures))
    else:
        for mode in ("no_key", "admin_key"):
            f = figures[mode]
            print(f"{mode:>9}: {f['cases']} cases in {f['seconds']} s ({f['cases_per_second']} cases/s), "
                  f"{f['accepted_2xx']} accepted (2xx) on {f['operations_reaching_2xx']} operations")
        w = figures["workflows"]
        print(f"workflows: {w['calls']} calls in {w['seconds']} s following links, {w['accepted_2xx']} accepted (2xx) "
              f"on {w['operations_reaching_2xx']} operations")
        print(f"authenticated cases/s vs keyless (baseline): {figures['authenticated_rate_vs_keyless']}x")
        print(f"failures: {len(failures)}")
        for failure in failures:
            print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
