"""What every benchmark script needs: free ports, waiting for a server, CPU time, and an
open-loop sender.

A package (not ``bench/*.py``) so that ``make bench``, which runs every script in
``bench/``, does not run it; the scripts import it as ``benchkit`` (their own directory is
first on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Return once something listens on ``port``; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads) so far, from ``/proc/<pid>/stat``:
    far less sensitive to a busy machine than rates are."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14, 15


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def open_loop(rate: float, total: int, send: Callable[[int], Awaitable[None]]) -> None:
    """Start ``send(n)`` for each n < ``total`` on time at ``rate`` a second, whatever the
    earlier ones take (open loop), then wait for them all.

    The garbage collector is off meanwhile: a collection of this process's older objects
    (about 50 ms, once a run) would hold back the sends due during it, then start them in
    one burst, each measured late."""
    tasks = []
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        begin = time.perf_counter()
        for n in range(total):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(n)))
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
        gc.unfreeze()
