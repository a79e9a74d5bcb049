"""PostgreSQL, the durable record: migrations, the write-behind persister, reconciliation."""
