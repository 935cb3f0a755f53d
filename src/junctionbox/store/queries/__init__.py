"""Shared SQLAlchemy Core queries, one module per resource family. Each takes a connection
from ``Database.read()``/``write()`` so that a use case composes them in one transaction."""
