"""Outbound webhooks: the dispatcher that tells tenants what happened.

The dispatcher is a second consumer group (``dispatcher``) on the partition logs the
persister reads, so the request path does no extra work. ``mapping`` turns engine
events into public ones, ``signing`` signs a body, ``urls`` refuses private targets,
``delivery`` POSTs one body, ``store`` keeps endpoints and deliveries in PostgreSQL,
``dispatcher`` ties them together (docs/design.md, "Telling").
"""
