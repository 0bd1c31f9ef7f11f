"""Warehouse errors, and which of them are worth retrying."""

from __future__ import annotations

import re


class WarehouseError(RuntimeError):
    """A warehouse could not be opened or a statement failed. ``transient`` is
    True only for errors worth retrying (a lost connection, a timeout, a lock
    conflict), never for bad credentials, a missing database or object, or bad
    SQL. ``sqlstate`` is PostgreSQL's error code when there is one."""

    def __init__(self, message: str, transient: bool | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self._transient = transient
        self.sqlstate = sqlstate

    @property
    def transient(self) -> bool:
        if self._transient is not None:
            return self._transient
        return is_transient(self.__cause__)

    def __reduce__(self):  # picklable across processes (Prefect results, Dask)
        return (type(self), (str(self), self._transient, self.sqlstate))


#: PostgreSQL error classes / codes worth retrying: connection exceptions,
#: insufficient resources, operator intervention (shutdown, cancel, timeout),
#: serialization failures, deadlocks and lock timeouts.
_PG_TRANSIENT_CLASSES = ("08", "53", "57")
_PG_TRANSIENT_CODES = ("40001", "40P01", "55P03", "55006")
#: a failed connection attempt carries no SQLSTATE: these messages are final
_PG_FINAL_CONNECT = re.compile(
    r"authentication failed|no password supplied|does not exist|no pg_hba\.conf entry|"
    r"permission denied|not permitted to log in|invalid (?:dsn|connection option|port)|"
    r"could not translate host name|SSL .*(?:required|unsupported)|certificate",
    re.IGNORECASE,
)


def is_transient(exc: BaseException | None) -> bool:
    """Whether a driver error is worth retrying."""
    if exc is None:
        return False
    if isinstance(exc, WarehouseError):
        return exc.transient
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    kind = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("psycopg"):
        code = getattr(exc, "sqlstate", None)
        if code:
            return code[:2] in _PG_TRANSIENT_CLASSES or code in _PG_TRANSIENT_CODES
        # no SQLSTATE: a connection that failed or was lost
        return kind in ("OperationalError", "InterfaceError") and not _PG_FINAL_CONNECT.search(str(exc))
    if module.startswith("duckdb") or kind.endswith("Exception"):
        text = str(exc).lower()
        return kind == "ConnectionException" or (kind == "IOException" and "lock" in text)
    return False
