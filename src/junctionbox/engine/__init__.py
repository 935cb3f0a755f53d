"""Long-running loops: maintenance, pollers, and (later) the dispatcher and workers."""
