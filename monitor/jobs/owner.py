"""This process's name on the leases and claims it takes (windows, webhook messages, retrain
runs): host, process id and a token drawn once per process, so that a restarted process with a
recycled pid is still someone else."""

from __future__ import annotations

import os
import socket
import uuid

_TOKEN = uuid.uuid4().hex[:8]


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"
