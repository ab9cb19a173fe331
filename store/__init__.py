"""The append-only log: schema files, the single writer, readers with limits, backends."""
