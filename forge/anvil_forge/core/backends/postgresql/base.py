"""Django's PostgreSQL backend, with the connections kept in :mod:`anvil_forge.core.dbpool` between requests."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base

from anvil_forge.core.dbpool import PooledWrapperMixin, pool


class DatabaseWrapper(PooledWrapperMixin, base.DatabaseWrapper):
    def _pool_reusable(self, connection: Any) -> bool:
        if self.pool is not None or getattr(connection, "closed", True) or getattr(connection, "broken", False):
            return False  # Django's own pool (OPTIONS["pool"]) keeps its connections itself
        from psycopg import pq

        status = connection.info.transaction_status
        if status == pq.TransactionStatus.INTRANS or status == pq.TransactionStatus.INERROR:
            try:
                connection.rollback()
            except Exception:
                return False
            status = connection.info.transaction_status
        return status == pq.TransactionStatus.IDLE

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.pool is not None:
            return base.DatabaseWrapper.get_new_connection(self, conn_params)
        return super().get_new_connection(conn_params)

    def close_pool(self) -> None:
        pool.drain()  # before a test database is created or dropped: nothing may stay connected to it
        super().close_pool()
