"""Fault injection on the audit log's writes, shared by the atomic-audit tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from storefront.bootstrap import Container
from tests.integration.test_staffed_review_fixes import Crash

FAILURES = ["database_error", "crash"]
"""How the audit write fails: the database refuses it, or the process dies in it."""


@contextmanager
def audit_write_fails(c: Container, how: str) -> Iterator[list[str]]:
    """The next INSERT into ``audit_log`` on the container's engine fails (once) with a
    database error or a :class:`Crash`; yields the statements that were made to fail."""
    failed: list[str] = []

    def fail(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if failed or not statement.lstrip().upper().startswith("INSERT INTO AUDIT_LOG"):
            return
        failed.append(statement)
        if how == "crash":
            raise Crash
        raise OperationalError(statement, {}, Exception("disk I/O error (test)"))

    sa.event.listen(c.engine, "before_cursor_execute", fail)
    try:
        yield failed
    finally:
        sa.event.remove(c.engine, "before_cursor_execute", fail)


def raised(how: str) -> type[BaseException]:
    """The exception type :func:`audit_write_fails` raises for ``how``."""
    return Crash if how == "crash" else OperationalError
