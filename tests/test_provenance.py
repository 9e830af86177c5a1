"""hmore.provenance: the commit and machine that every results file records."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hmore import provenance

ROOT = Path(__file__).resolve().parents[1]


def test_git_commit_is_this_checkouts_head():
    c = provenance.git_commit()
    if not (ROOT / ".git").exists():
        assert c == "unknown"
        return
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", c) and c.startswith(head)


def test_machine_names_the_cpu_and_cores(monkeypatch):
    monkeypatch.setattr(provenance, "cpu_model", lambda: "Some CPU")
    monkeypatch.setattr(provenance.os, "cpu_count", lambda: 7)
    assert provenance.machine("cpu") == "Some CPU (7 cores)"
    # a CUDA device that cannot be queried (no GPU here) falls back to the CPU line instead of raising
    monkeypatch.setattr("torch.cuda.get_device_name", lambda d: (_ for _ in ()).throw(RuntimeError("no GPU")))
    assert provenance.machine("cuda:0") == "Some CPU (7 cores)"
    monkeypatch.setattr("torch.cuda.get_device_name", lambda d: "NVIDIA H100")
    assert provenance.machine("cuda:0") == "NVIDIA H100"
