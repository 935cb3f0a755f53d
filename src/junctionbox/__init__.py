"""junctionbox: an integration gateway and orchestration engine."""

__version__ = "0.1.0"
