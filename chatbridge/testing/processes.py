"""Child processes of a test that may be killed and restarted: ports that survive a
restart, and SIGKILL that reaps.

Ports that must survive a restart come from ``restartable_ports``: below the kernel's
ephemeral range, so no outgoing connection takes one while its server is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
from pathlib import Path

from chatbridge.bench.processes import ChildProcess, free_port

KILL_WAIT = 10.0
"""Seconds to wait for a SIGKILLed child to be reaped."""


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def restartable_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports outside the kernel's ephemeral range.

    A server restarted on its old port must find it free. A port the OS picked (``bind(0)``)
    lies in the ephemeral range, where any outgoing connection may take it as its local port
    while the server is down; ports below that range are never handed out that way.
    Falls back to OS-picked ports where the range is unknown (not Linux).
    """
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    chosen: list[int] = []
    rng = random.Random()
    for _ in range(200 * count):
        if len(chosen) == count:
            return chosen
        port = rng.randrange(10_000, low) if low > 11_000 else free_port(host)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
    raise RuntimeError(f"no {count} free ports found on {host}")


async def sigkill(child: ChildProcess) -> None:
    """SIGKILL ``child`` (if it runs) and reap it."""
    proc = child.proc
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), KILL_WAIT)
