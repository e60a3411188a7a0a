"""Build `lokitalk/assets/face_template.npz`: the 3-D face template the head-pose fit targets.

Why this exists: mediapipe's canonical face model is not in any mediapipe wheel (checked
0.10.9, 0.10.14, 0.10.21), so the template is made here from what the wheel does ship. We run
the bundled 478-point face mesh on a public-domain portrait (scikit-image's `astronaut`, a NASA
photo), on it and on its mirror image, and:

1. read each landmark in pixels (x, y) with mediapipe's relative depth z (same scale as x);
2. pair every landmark with its mirror twin (Hungarian matching of the mirrored detection);
3. rotate the shape so that it is left-right symmetric, then average it with its mirror;
4. scale to metres (outer eye corners 9.0 cm apart, an adult average) and move the origin to
   about the centre of the head (9 cm behind the nose tip), the pivot of head rotation.

Head frame (used everywhere in LokiTalk): x to the image right when the face looks at the
camera, y down, z away from the camera (into the head). So an identity rotation with a
translation (0, 0, d) is a face looking straight into an OpenCV camera at distance d.

Run from the repository root: `python tools/build_face_template.py`. It needs mediapipe
(installed by scripts/setup.sh); the output is a small committed asset so that runtime code
(including on machines without mediapipe) only reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

OUT = Path(__file__).resolve().parents[1] / "lokitalk" / "assets" / "face_template.npz"
UPSAMPLE = 4  # the astronaut's face is ~90 px wide: enlarge it so landmarks are precise
INTEROCULAR_M = 0.090
NOSE_TO_PIVOT_M = 0.090


def detect(image: np.ndarray) -> np.ndarray:
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=True
    ) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("no face found in the template portrait")
    h, w = image.shape[:2]
    pts = np.array([[p.x * w, p.y * h, p.z * w] for p in result.multi_face_landmarks[0].landmark])
    return pts


def edges_to_loops(edges) -> list[list[int]]:
    """Order an undirected edge set into its connected paths/loops (each a vertex list)."""
    adjacency: dict[int, list[int]] = {}
    for a, b in edges:
        adjacency.setdefault(a, []).append(b)
        adjacency.setdefault(b, []).append(a)
    seen: set[int] = set()
    loops = []
    # start paths at degree-1 vertices first so open paths are walked end to end
    starts = sorted(adjacency, key=lambda v: (len(adjacency[v]) != 1, v))
    for start in starts:
        if start in seen:
            continue
        path = [start]
        seen.add(start)
        while True:
            nxt = [v for v in adjacency[path[-1]] if v not in seen]
            if not nxt:
                break
            path.append(nxt[0])
            seen.add(nxt[0])
        loops.append(path)
    return loops


def main() -> None:
    from mediapipe.python.solutions import face_mesh_connections as fmc
    from skimage import data, transform

    portrait = data.astronaut()
    crop = portrait[20:240, 120:330]  # the face and some margin, in the 512x512 photo
    big = (transform.rescale(crop, UPSAMPLE, channel_axis=2, order=3) * 255).clip(0, 255)
    big = np.ascontiguousarray(big.astype(np.uint8))
    pts = detect(big)
    mirrored = detect(np.ascontiguousarray(big[:, ::-1]))
    mirrored[:, 0] = big.shape[1] - mirrored[:, 0]

    # mirror pairing: landmark i of the image sits where landmark mirror[i] of the flipped image is
    cost = np.linalg.norm(pts[:, None, :2] - mirrored[None, :, :2], axis=2)
    _, mirror = linear_sum_assignment(cost)
    mirror = np.asarray(mirror)
    # force an involution (i -> j -> i); the few disagreeing pairs are kept symmetric
    for i in range(len(mirror)):
        j = mirror[i]
        if mirror[j] != i:
            mirror[j] = i

    # symmetrise: find R with R X ~ F (R X)[mirror], F = flip x; Kabsch between X and F X[mirror]
    x = pts - pts.mean(0)
    flip = np.diag([-1.0, 1.0, 1.0])
    y = (x @ flip)[mirror]
    u, _, vt = np.linalg.svd(y.T @ x)
    d = np.sign(np.linalg.det(u @ vt))
    rot_half = u @ np.diag([1, 1, d]) @ vt  # rotates X onto its mirror: apply half of it
    angle_axis = _log_rotation(rot_half)
    x = x @ _exp_rotation(angle_axis / 2).T
    sym = 0.5 * (x + (x @ flip)[mirror])

    scale = INTEROCULAR_M / np.linalg.norm(sym[33] - sym[263])
    sym *= scale
    nose_tip = sym[1]
    origin = np.array([0.0, sym[:468, 1].mean(), nose_tip[2] + NOSE_TO_PIVOT_M])
    sym -= origin
    sym[:, 0] -= sym[:, 0].mean()

    loops = {
        "face_oval": edges_to_loops(fmc.FACEMESH_FACE_OVAL)[0],
        "left_eye": edges_to_loops(fmc.FACEMESH_LEFT_EYE)[0],
        "right_eye": edges_to_loops(fmc.FACEMESH_RIGHT_EYE)[0],
        "left_iris": edges_to_loops(fmc.FACEMESH_LEFT_IRIS)[0],
        "right_iris": edges_to_loops(fmc.FACEMESH_RIGHT_IRIS)[0],
        "left_eyebrow": sorted({v for e in fmc.FACEMESH_LEFT_EYEBROW for v in e}),
        "right_eyebrow": sorted({v for e in fmc.FACEMESH_RIGHT_EYEBROW for v in e}),
    }
    lip_loops = edges_to_loops(fmc.FACEMESH_LIPS)
    # the outer lip loop encloses the inner one: larger polygon area
    lip_loops.sort(key=lambda loop: -_polygon_area(sym[loop, :2]))
    loops["lips_outer"], loops["lips_inner"] = lip_loops[0], lip_loops[1]

    # rigid set: mesh points above the upper lip that do not move with eyelids or brows
    moving = set(loops["left_eye"]) | set(loops["right_eye"]) | set(loops["left_eyebrow"])
    moving |= set(loops["right_eyebrow"]) | set(range(468, 478))
    upper_lip_y = sym[loops["lips_outer"], 1].min()
    rigid = [i for i in range(468) if i not in moving and sym[i, 1] < upper_lip_y - 0.004]

    uv = pts[:, :2] / UPSAMPLE + np.array([120.0, 20.0])  # landmark positions in the portrait
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        OUT,
        vertices=sym.astype(np.float32),
        mirror=mirror.astype(np.int32),
        rigid=np.array(rigid, np.int32),
        portrait_uv=uv.astype(np.float32),
        tessellation_edges=np.array(sorted(fmc.FACEMESH_TESSELATION), np.int32),
        **{f"loop_{k}": np.array(v, np.int32) for k, v in loops.items()},
    )
    print(f"wrote {OUT} ({len(rigid)} rigid points, symmetry residual "
          f"{np.abs(x - (x @ flip)[mirror]).mean() * scale * 1000:.2f} mm)")


def _polygon_area(p: np.ndarray) -> float:
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))


def _log_rotation(r: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(r).as_rotvec()


def _exp_rotation(v: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(v).as_matrix()


if __name__ == "__main__":
    main()
