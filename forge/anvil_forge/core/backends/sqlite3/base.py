"""Django's SQLite backend, with the connections kept in :mod:`anvil_forge.core.dbpool` between requests."""

from __future__ import annotations

from typing import Any

from django.db.backends.sqlite3 import base

from anvil_forge.core.dbpool import PooledWrapperMixin


class DatabaseWrapper(PooledWrapperMixin, base.DatabaseWrapper):
    def _pool_reusable(self, connection: Any) -> bool:
        if self.is_in_memory_db():
            return False
        if connection.in_transaction:
            try:
                connection.rollback()
            except Exception:
                return False
        return not connection.in_transaction
