"""The 3-D face template and the landmark index groups of the 478-point face mesh.

The template is built by tools/build_face_template.py (see there for how and why) and read
here, so nothing at run time needs mediapipe. Head frame: x to the image right for a face that
looks at the camera, y down, z away from the camera, metres, origin near the head's centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ASSET = Path(__file__).parent / "assets" / "face_template.npz"
NUM_LANDMARKS = 478
NUM_MESH_POINTS = 468  # the last 10 are the two irises


@dataclass(frozen=True)
class FaceTemplate:
    vertices: np.ndarray  # [478, 3] float32, metres, head frame
    mirror: np.ndarray  # [478] index of each landmark's left-right twin
    rigid: np.ndarray  # indices that move with the skull only (no lips, lids, brows)
    portrait_uv: np.ndarray  # [478, 2] pixel positions in skimage's astronaut portrait
    tessellation_edges: np.ndarray  # [E, 2] mesh edges
    face_oval: np.ndarray  # closed loop around the face
    lips_outer: np.ndarray  # closed loop, outer lip contour
    lips_inner: np.ndarray  # closed loop, inner lip contour (the mouth opening)
    left_eye: np.ndarray  # closed loop, the subject's left eye (image right)
    right_eye: np.ndarray
    left_iris: np.ndarray
    right_iris: np.ndarray
    left_eyebrow: np.ndarray
    right_eyebrow: np.ndarray

    @property
    def mouth_points(self) -> np.ndarray:
        """Every landmark on the lips, in a fixed order (outer loop then inner loop)."""
        return np.concatenate([self.lips_outer, self.lips_inner])


@lru_cache(maxsize=1)
def load_face_template() -> FaceTemplate:
    data = np.load(ASSET)
    loops = {k[len("loop_"):]: data[k] for k in data.files if k.startswith("loop_")}
    return FaceTemplate(
        vertices=data["vertices"],
        mirror=data["mirror"],
        rigid=data["rigid"],
        portrait_uv=data["portrait_uv"],
        tessellation_edges=data["tessellation_edges"],
        **loops,
    )


def polygon_area(points: np.ndarray) -> np.ndarray:
    """Shoelace area of closed polygons; points [..., K, 2] -> [...]."""
    x, y = points[..., 0], points[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=-1) - y * np.roll(x, -1, axis=-1), axis=-1))
