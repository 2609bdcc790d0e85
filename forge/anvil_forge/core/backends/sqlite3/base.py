"""Django's SQLite backend, with the connections kept in :mod:`anvil_forge.core.dbpool` between requests."""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

from django.db.backends.sqlite3 import base

from anvil_forge.core.dbpool import PooledWrapperMixin


class DatabaseWrapper(PooledWrapperMixin, base.DatabaseWrapper):
    def _pool_key(self) -> Hashable:
        """The file's identity is part of the key: once the file is moved or replaced (an outage, a restore),
        no kept connection to the old one is used again, from the very next request."""
        name = str(self.settings_dict.get("NAME") or "")
        try:
            stat = os.stat(name)
            identity: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except OSError:
            identity = None
        return (super()._pool_key(), identity)

    def _pool_reusable(self, connection: Any) -> bool:
        if self.is_in_memory_db():
            return False
        if connection.in_transaction:
            try:
                connection.rollback()
            except Exception:
                return False
        return not connection.in_transaction
