"""Logging, request context, metrics and tracing."""
