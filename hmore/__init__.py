"""hmore: the H-MoRe model (world-local flows) built on hmore_kernels, plus its data and tools."""
from __future__ import annotations

__version__ = "0.1.0"
