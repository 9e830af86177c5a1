"""Small I/O helpers shared by the data modules: atomic writes and image reads that name the file."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

import cv2
import numpy as np


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


# mkstemp creates files 0600; the final files get the mode a plain open() would give them
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader (or a resumed run) therefore sees either the old file or the complete new one, never a
    partial file, even if the process is killed mid-write. ``fsync=True`` also survives a power cut
    (slower; used for the JSON checkpoints).
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=f".tmp{ext}")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:  # the rename itself survives a power cut only once the folder's entry is on disk
            try:
                dfd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError:
                pass
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def temp_path_for(path: str) -> str:
    """A fresh temporary path beside ``path`` keeping its extension (for writers that need a name)."""
    folder = os.path.dirname(os.fspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=f".tmp{ext}")
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    return tmp


def is_temp_name(name: str) -> bool:
    """True for the temporary files :func:`atomic_write_bytes` leaves if killed between write and rename."""
    return name.startswith(".") and ".tmp" in name


def atomic_write_json(path: str, obj, fsync: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"), fsync=fsync)


def read_json(path: str, what: str = "JSON file"):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def encode_png(img: np.ndarray, path_for_errors: str = "<png>") -> bytes:
    """PNG bytes of a uint8/uint16 image ``[H, W]`` or ``[H, W, C]`` (C in 1, 3, 4; channel order as given)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"{path_for_errors}: OpenCV could not encode a PNG of shape {img.shape}, dtype {img.dtype}")
    return buf.tobytes()


def write_png(path: str, img: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(img, path))


def read_png(path: str, flags: int = cv2.IMREAD_UNCHANGED, what: str = "image") -> np.ndarray:
    """Read an image file, raising FileNotFoundError / ValueError that name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise ValueError(f"{path}: {what} cannot be decoded (empty, truncated or not an image)")
    return img


@contextlib.contextmanager
def native_stderr_redirected(path: str = os.devnull):
    """Send what native code writes to file descriptor 2 into ``path`` (appended) while Python's
    ``sys.stderr`` (progress bars, warnings, error messages) keeps writing to the real stderr.

    For libraries whose C++ logs bypass Python (MediaPipe's TFLite/absl lines). Nested use and a
    stderr without a file descriptor (pytest's capture) are handled: then nothing is redirected."""
    try:
        sys.stderr.flush()
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        yield
        return
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    old_stderr = sys.stderr
    replaced = old_stderr is sys.__stderr__  # only swap when stderr is the process's own
    try:
        if replaced:
            sys.stderr = open(saved, "w", buffering=1, closefd=False, encoding=getattr(old_stderr, "encoding", None),
                              errors="backslashreplace")
        os.dup2(target, fd)
        yield
    finally:
        try:
            if replaced:
                sys.stderr.flush()
        finally:
            os.dup2(saved, fd)
            if replaced:
                sys.stderr.close()
                sys.stderr = old_stderr
            os.close(saved)
            os.close(target)


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_out_dir(path: str, name: str = "--out") -> str:
    """An output folder that may not exist yet: ``ValueError`` naming ``name`` when ``path``, or the
    nearest ancestor that exists, is a file (instead of ``[Errno 17]``/``[Errno 20]`` mid-run)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{name} {path}: exists and is a file; expected a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name} {path}: {parent} is a file, so the folder cannot be made")
    return path
