"""The durable job queue: one table of jobs for all asynchronous work, claimed with leases.

``jobs`` holds the pure values, ``store`` the :class:`JobQueue` on the database, ``notify`` the
wake-ups of idle workers. See docs/queue.md.
"""

from junctionbox.queue.jobs import Job, JobState, Lease, NewJob
from junctionbox.queue.store import JobQueue

__all__ = ["Job", "JobQueue", "JobState", "Lease", "NewJob"]
