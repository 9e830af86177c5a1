"""The skeleton family (ops.md section 4): keypoint layouts now; the ops are filled in by their issue."""
from __future__ import annotations

from .layouts import BLAZEPOSE33, COCO17, H36M17, LAYOUTS, Layout, convert_keypoints

__all__: list[str] = ["convert_keypoints"]
