"""The store's health as the web shows it, read through the query service so the web never holds the store
(DESIGN.md: web imports query and proto only): /readyz's schema version and /ops with the writer's figures."""
from __future__ import annotations

from typing import Optional


class Health:
    """Part of QueryService (query/service.py), which holds `log` (the store: store/api.py EventLog) and `ops`."""

    def schema_version(self) -> str:
        """The newest migration applied to the store (/readyz); raises while the store is not open (yet)."""
        return self.log.schema_version()

    def ops_with_writer(self, app: Optional[str] = None) -> dict:
        """`ops`, with the queue figures of the writer of the store this service reads (/ops)."""
        return self.ops(app, self.log)
