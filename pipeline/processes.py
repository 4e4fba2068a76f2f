"""Stopping the processes Herald's commands, tests and benchmarks start."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(
    process: subprocess.Popen[Any] | None, timeout: float = 30.0, sig: int = signal.SIGTERM
) -> None:
    """Signal a running process to stop (SIGTERM), SIGKILL it after `timeout` s; reap it."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
