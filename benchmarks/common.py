"""Shared benchmark plumbing: timing, summary statistics, environment metadata, the results CSV, tables.

Every ``benchmarks/bench_<family>.py`` uses these so that all families report the same way (style.md):
the median of many runs and its spread, the device, the library versions and the commit, and ratios to
baselines measured in the same run. Results are appended to ``benchmarks/results/<device-slug>.csv``,
one file per device (Liger-Kernel keeps one results file keyed by GPU name; we key by the device, CPU
included, since a 2-core CPU and a 16-core one are not comparable).
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import importlib
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---- timing -------------------------------------------------------------------------------------
class _L2Flusher:
    """Overwrites a buffer larger than the GPU's L2 cache before each timed run.

    H100/H200 have a 50 MB L2: a 12 MB flow field timed in a loop would be read from cache, and its
    "bandwidth" could exceed what DRAM delivers. Flushing first times the cold case that training sees.
    """

    def __init__(self, device: torch.device, nbytes: int = 256 << 20):
        self.buf = torch.empty(nbytes // 4, dtype=torch.float32, device=device)

    def __call__(self):
        self.buf.zero_()


def measure(
    fn: Callable[[], object],
    *,
    warmup: int = 1,
    min_runs: int = 5,
    min_time: float = 0.5,
    max_runs: int = 30,
    max_time: float = 10.0,
    floor_runs: int = 3,
    max_call: float | None = None,
    fold_warmup: float = 1.0,
    device: torch.device | str | None = None,
    flush_l2: bool = True,
) -> list[float]:
    """Time ``fn()`` repeatedly; returns the per-run wall times in seconds.

    Runs until at least ``min_runs`` runs and ``min_time`` seconds of timed runs are done, or
    ``max_runs`` runs, or -- for slow functions -- ``max_time`` seconds once ``floor_runs`` runs exist
    (so a 3 s call costs ~3 runs, not 5, and a whole benchmark stays within minutes). If the first
    warm-up call alone takes longer than ``max_call`` seconds, that one call is the result (a single
    run: its first-call overhead is negligible next to seconds of work, and repeating it would cost
    minutes). On CPU a first call over ``fold_warmup`` seconds also counts as the first run.

    On CUDA each run is bracketed by ``torch.cuda.Event``s on the current stream and synchronised, so
    the time is the GPU's, not the launch's; the L2 cache is flushed before each run (``flush_l2``),
    outside the timed region. On CPU, ``time.perf_counter`` around the call.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cuda = dev.type == "cuda"
    flusher = _L2Flusher(dev) if (cuda and flush_l2) else None
    times: list[float] = []
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(dev)
        t = time.perf_counter() - t0
        # Only on CPU: a GPU's first call may include a Triton/NVRTC compile, so there the check
        # waits for the first timed run below.
        if i == 0 and not cuda and max_call is not None and t > max_call:
            return [t]
        if i == 0 and not cuda and t > fold_warmup:
            # A CPU call of seconds has a first-call overhead (allocation) far below its spread:
            # the warm-up is kept as the first run rather than paid for twice.
            times.append(t)
            break
    total = sum(times)
    while True:
        if cuda:
            if flusher is not None:
                flusher()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            t = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            fn()
            t = time.perf_counter() - t0
        times.append(t)
        total += t
        n = len(times)
        if max_call is not None and t > max_call:
            break  # one more slow call would cost more than it tells (machine load can grow mid-row)
        if n >= max_runs:
            break
        if n >= min_runs and total >= min_time:
            break
        if n >= floor_runs and total >= max_time:
            break
    return times


def summarize(times: Sequence[float]) -> dict:
    """Median, quartiles (IQR = q3 - q1), p10/p90, min and count, in milliseconds."""
    ms = sorted(t * 1e3 for t in times)
    n = len(ms)
    if n == 0:
        return {}
    if n >= 2:
        q = statistics.quantiles(ms, n=4, method="inclusive")
        d = statistics.quantiles(ms, n=10, method="inclusive")
        q1, q3, p10, p90 = q[0], q[2], d[0], d[-1]
    else:
        q1 = q3 = p10 = p90 = ms[0]
    return {
        "median_ms": statistics.median(ms),
        "q1_ms": q1,
        "q3_ms": q3,
        "iqr_ms": q3 - q1,
        "p10_ms": p10,
        "p90_ms": p90,
        "min_ms": ms[0],
        "runs": n,
    }


# ---- environment ----------------------------------------------------------------------------------
def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's count: containers limit it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Give torch (and OpenCV, if present) one thread per available core; returns the count."""
    n = n or cpu_cores()
    torch.set_num_threads(n)
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(n)
    return n


def cpu_model() -> str:
    from hmore.provenance import cpu_model as _cpu_model  # one definition, shared with the package's results files

    return _cpu_model()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({cpu_cores()} cores)"


def slugify(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def _version(module: str, attr: str = "__version__") -> str:
    try:
        return str(getattr(importlib.import_module(module), attr))
    except Exception:  # ImportError, or a module that fails to import for its own reasons
        return ""


def git_commit(root: Path = REPO_ROOT) -> str:
    """Short HEAD, with "-dirty" when tracked files are modified or untracked sources exist.

    Read-only: ``--no-optional-locks`` keeps ``git status`` from refreshing the index, so a benchmark
    never races people committing. The results folder itself is not counted as dirt.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        st = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain"],
            cwd=root, capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = [ln for ln in st.splitlines() if ln.strip() and "benchmarks/results/" not in ln]
    return head + ("-dirty" if dirty else "")


def metadata(device: torch.device, threads: int) -> dict:
    """Everything a row needs to be compared with rows from other runs."""
    triton_v = _version("triton")
    return {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "device_type": device.type,
        "threads": threads,
        # Other work on the machine (a compiler, a test run) inflates CPU timings; the 1-minute load
        # average at the start lets a reader discount such a run.
        "loadavg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else "",
        "commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
        "triton": triton_v,
        "kornia": _version("kornia"),
        "opencv": _version("cv2"),
        "scipy": _version("scipy"),
        "numpy": _version("numpy"),
    }


# ---- GPU copy bandwidth -------------------------------------------------------------------------
def copy_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s: (bytes read + bytes written) / median time.

    1 GiB each way is far larger than any L2, so this is the DRAM rate a streaming kernel can hope for.
    """
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    times = measure(lambda: dst.copy_(src), warmup=3, min_runs=10, min_time=0.2, device=device, flush_l2=False)
    del src, dst
    return 2 * nbytes / statistics.median(times)


# ---- results file -------------------------------------------------------------------------------
def results_path(device: torch.device) -> Path:
    return RESULTS_DIR / f"{slugify(device_name(device))}.csv"


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a results CSV. A header line repeated inside the file starts a new section with
    its own columns: that is what git's union merge (.gitattributes) leaves when two branches each added
    rows (and perhaps columns); the columns are united in order of appearance.
    """
    fields: list[str] = []
    out: list[dict] = []
    with open(path, newline="") as f:
        header = None
        for rec in csv.reader(f):
            if not rec:
                continue
            if rec[0] == "op" and "median_ms" in rec:  # a header line
                header = rec
                fields.extend(c for c in rec if c not in fields)
                continue
            if header is None:
                raise ValueError(f"{path}: no header line before the first row")
            out.append(dict(zip(header, rec)))
    return fields, out


def append_rows(path: Path, rows: Iterable[dict]) -> int:
    """Append ``rows`` to the CSV at ``path`` atomically; returns how many rows the file now holds.

    The existing rows are read and everything is written to a temporary file in the same folder, then
    ``os.replace``d over the old one, so a reader never sees a half-written file and an interrupted run
    leaves the old one intact. An flock serialises concurrent benchmark runs (two
    read-modify-write cycles would otherwise drop one run's rows). New columns are added at the end;
    old rows get them empty.
    """
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An flock on the folder itself serialises concurrent runs without leaving a lock file behind
    # for someone to commit.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        old: list[dict] = []
        fields: list[str] = []
        if path.exists():
            fields, old = read_rows(path)
        for row in rows:
            for k in row:
                if k not in fields:
                    fields.append(k)
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields, restval="")
                w.writeheader()
                w.writerows(old)
                w.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the results file is meant to be shared
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        os.close(dir_fd)  # releases the lock
    return len(old) + len(rows)


# ---- printing -----------------------------------------------------------------------------------
def fmt(v, digits: int = 3) -> str:
    """Numbers to 3 significant digits (so 0.0123 and 1234 both read well); None -> "-"."""
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 10 ** digits:
            return f"{v:.0f}"
        return f"{v:.{digits}g}" if a >= 1e-3 else f"{v:.2e}"
    return str(v)


def print_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], *, right: Iterable[str] = ()) -> None:
    """Print ``rows`` as an aligned text table. ``columns`` = (key, header); keys in ``right`` right-align."""
    right = set(right)
    cells = [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]

    def line(vals):
        return "  ".join(
            v.rjust(w) if k in right else v.ljust(w) for v, w, (k, _) in zip(vals, widths, columns)
        ).rstrip()

    print(line([h for _, h in columns]))
    print("  ".join("-" * w for w in widths))
    prev = None
    for r, c in zip(rows, cells):
        group = (r.get("op"), r.get("size"))
        if prev is not None and group != prev:
            print()  # a blank line between (op, size) groups keeps a long table readable
        prev = group
        print(line(c))
