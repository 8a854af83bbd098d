"""Fuzz the HTTP API from its own OpenAPI schema with schemathesis: no request may get a 5xx.

    python benchmarks/fuzz_api.py [--examples 1000] [--json FILE] [--seed S]

The app runs in-process (a fresh SQLite store in a temporary folder, the real
bootstrap). ``--examples`` is the total over all operations, spread evenly.
Requests are sent both anonymously and with a manager's bearer token, so the
handlers behind authentication are reached too (device-signed routes answer
401 to unsigned fuzz requests, which is the point of signing them). Writes
``requests``, ``server_errors`` and the first failures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from storefront.api.app import create_app
from storefront.bootstrap import bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.security.client import LocalAccess
from storefront.settings import Settings


def fuzz(examples: int, seed: int, folder: Path) -> dict[str, Any]:
    """Run the fuzzing; returns the counts and up to 20 failures."""
    container = bootstrap(Settings(data_dir=folder, database_url=None))
    container.catalogue.upsert(builtin_items())
    token = LocalAccess(container.security, store_id=container.settings.store_id).token("mgr")
    app = create_app(container)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    per_operation = max(1, examples // max(1, len(operations)))
    statuses: Counter[int] = Counter()
    failures: list[dict[str, Any]] = []
    for operation in operations:
        _fuzz_operation(operation, per_operation, seed, token, statuses, failures)
    container.close()
    return {"requests": sum(statuses.values()), "operations": len(operations),
            "server_errors": sum(n for status, n in statuses.items() if status >= 500),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "failures": failures[:20]}


def _fuzz_operation(operation: Any, count: int, seed: int, token: str,
                    statuses: Counter[int], failures: list[dict[str, Any]]) -> None:
    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append({"operation": operation.label, "status": response.status_code,
                                 "body": response.text[:300]})

    run()


def main() -> int:
    """Fuzz, print and save the result; exit 1 on any server error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "fuzz_api.json")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="storefront-fuzz-") as tmp:
        result = fuzz(args.examples, args.seed, Path(tmp))
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("requests", "operations", "server_errors",
                                             "seconds")}, indent=2))
    return 1 if result["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
