"""Where a result came from: the code's commit and the machine, recorded in every results file the package
writes (training logs, ``hmore eval``'s eval.json, ``hmore probe``'s probe.json)."""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess

__all__ = ["git_commit", "cpu_model", "machine"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> str:
    """The checkout's HEAD (12 hex digits) with ``-dirty`` when tracked files are modified; ``"unknown"``
    outside a git checkout (an installed wheel) or without git."""
    try:
        r = subprocess.run(["git", "-C", _ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                           timeout=10)
        if r.returncode:
            return "unknown"
        dirty = subprocess.run(["git", "-C", _ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. "AMD EPYC"), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device="cpu") -> str:
    """One line naming what ran: the GPU's name for a CUDA ``device``, else the CPU model and its core count."""
    if str(device).startswith("cuda"):
        import torch

        with contextlib.suppress(Exception):
            return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_model()} ({os.cpu_count()} cores)"
