"""Which test frames show the head from a view the model never trained on.

A NeRF re-renders views it has seen far better than new ones, so one test-set average mixes two
questions: how well the model reproduces the person (poses it trained on, new expressions and
lips), and how well it extrapolates to unseen head rotations. On the clips of ../shared/data the
test frames' distance to the nearest training rotation is bimodal: 0.4-1.1 degrees (median)
where the speaker keeps repeating poses (id01, id04, id08, vox09) and 3.4-4.6 degrees where the
head turns away at the end of the clip (id05, id06, id07, id10, id11). A test frame is therefore
called *novel* when no training frame's head rotation is within `NOVEL_VIEW_DEG` of its own;
`lokitalk evaluate` reports every figure for the seen and the novel frames separately.

Rotation only: translation in the head frame moves the camera along the view and is absorbed by
the crop; a turned head is what exposes unseen surface.
"""

from __future__ import annotations

import numpy as np

NOVEL_VIEW_DEG = 2.0


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) between rotation matrices a [...,3,3] and b [...,3,3]."""
    # trace(a^T b) = 1 + 2 cos(angle); clip guards the rounding just outside [-1, 1]
    trace = np.einsum("...ji,...ji->...", a, b)
    return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def nearest_rotation_deg(rotations: np.ndarray, test: np.ndarray, train: np.ndarray, chunk: int = 256
                         ) -> np.ndarray:
    """[len(test)]: for each test frame, the angle to the closest training frame's rotation."""
    test_rot = rotations[np.asarray(test, int)]
    train_rot = rotations[np.asarray(train, int)]
    if len(train_rot) == 0:
        raise ValueError("no training frames to compare the test poses with")
    out = np.empty(len(test_rot))
    for start in range(0, len(test_rot), chunk):
        block = test_rot[start:start + chunk]
        out[start:start + chunk] = rotation_angle_deg(block[:, None], train_rot[None]).min(axis=1)
    return out


def nearest_rotation_deg_reference(rotations: np.ndarray, test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Slow reference: every pair through the relative rotation's axis-angle."""
    from scipy.spatial.transform import Rotation

    out = []
    for t in test:
        angles = [np.degrees(Rotation.from_matrix(rotations[int(s)].T @ rotations[int(t)]).magnitude())
                  for s in train]
        out.append(min(angles))
    return np.array(out)


def novel_view_mask(rotations: np.ndarray, test: np.ndarray, train: np.ndarray,
                    threshold_deg: float = NOVEL_VIEW_DEG) -> tuple[np.ndarray, np.ndarray]:
    """(novel [len(test)] bool, distance in degrees [len(test)])."""
    distance = nearest_rotation_deg(rotations, test, train)
    return distance > threshold_deg, distance


def split_summary(values: dict[str, np.ndarray], novel: np.ndarray) -> dict:
    """Per-frame figures -> their means over the seen and the novel frames ({} for an empty group;
    NaN entries, e.g. a frame without a mouth, are skipped)."""
    out = {}
    for name, mask in (("seen_views", ~novel), ("novel_views", novel)):
        group = {"frames": int(mask.sum())}
        if mask.any():
            for key, per_frame in values.items():
                chosen = np.asarray(per_frame, np.float64)[mask]
                chosen = chosen[np.isfinite(chosen)]
                group[key] = float(chosen.mean()) if len(chosen) else None
        out[name] = group
    return out
