"""Face depth supervision: the tracked face's 3-D points tell the field where its surface is.

Pose fitting (prepare.pose) adapts the face template's rigid points to the person and solves
every frame's pose against them, so each avatar holds a person-specific face shape in the head
frame (pose.npz "shape", metres) that the tracked poses are consistent with. A NeRF fitted to a
few seconds of one mostly frontal person is ill-posed in depth: any depth renders the training
views, and a face surface ~2 cm off (measured on id04's 5-s models, docs/RESULTS.md, "Face
depth") projects to the wrong place as soon as the head turns further than it did in training —
the rendered mouth then lands a few pixels aside of the real one on novel views.

Depth-supervised NeRF (Deng et al., CVPR 2022) uses sparse structure-from-motion points that
way; here the points come for free from the landmark fit. Each step, rays are shot from the
frame's camera centre through visible shape points (their outward normal faces the camera) and
the rendered termination is pulled towards the point:

    error = sum_k w_k (t_k - D) = depth - opacity * D    (metres; D: camera-to-point distance)

a Huber penalty in centimetres. It is linear in the ray's weights: mass in front of the point
and mass behind it pull opposite ways, and a ray the field leaves empty costs nothing (the
photometric and matte losses decide opacity). `depth_rays_reference` recomputes the rays
through the points' projected pixels for the tests.

The rigid fit leaves out the lips, chin and jaw (they move), so those points leave the mouth's
depth open: a 5-s model's surface sits ~1 cm in front of the lips. With
`TrainConfig.face_depth_lower_face` each frame also brings its own lower-face landmarks, put in
the head frame the way the lip feature is measured (`lower_face_points`); the draw of a step's
rays then covers both kinds of points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

DEPTH_UNIT_M = 0.01  # errors are penalised in centimetres


@dataclass(frozen=True)
class FaceDepthPoints:
    """A person's face points in the head frame and their outward unit normals, both [P,3]; with
    `frame_points` [N,Q,3] (NaN rows on frames without trusted landmarks) and `frame_normals`
    [Q,3], points that move from frame to frame (the lips and the lower face) as well."""

    points: np.ndarray
    normals: np.ndarray
    frame_points: np.ndarray | None = None
    frame_normals: np.ndarray | None = None

    def at(self, frame: int) -> "FaceDepthPoints":
        """The points one frame is supervised with: the fixed ones, then that frame's own."""
        if self.frame_points is None:
            return self
        return FaceDepthPoints(np.concatenate([self.points, self.frame_points[frame]]),
                               np.concatenate([self.normals, self.frame_normals]))

    def moving_only(self) -> "FaceDepthPoints":
        """The per-frame points alone (to measure the lower face apart from the rigid points)."""
        if self.frame_points is None:
            raise ValueError("these face points have no per-frame points")
        empty = np.zeros((0, 3))
        return FaceDepthPoints(empty, empty, self.frame_points, self.frame_normals)


def template_normals(vertices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[V,3] outward unit normals of a face mesh given by its edges: the least-variance direction
    of each vertex's one-ring (with the vertex), turned away from the head frame's origin (near
    the head's centre, lokitalk.face_model)."""
    neighbours: list[list[int]] = [[] for _ in range(len(vertices))]
    for a, b in edges:
        neighbours[int(a)].append(int(b))
        neighbours[int(b)].append(int(a))
    normals = np.zeros_like(vertices, dtype=np.float64)
    for index, ring in enumerate(neighbours):
        if len(ring) < 2:  # an isolated point (the irises have no mesh edges): face the origin's way
            normals[index] = vertices[index]
            continue
        patch = vertices[[index] + ring].astype(np.float64)
        _, _, axes = np.linalg.svd(patch - patch.mean(0))
        normals[index] = axes[-1]
    flip = (normals * vertices).sum(-1) < 0
    normals[flip] *= -1
    return normals / np.linalg.norm(normals, axis=-1, keepdims=True).clip(1e-12)


def lower_face_ids(template) -> np.ndarray:
    """Mesh landmarks the rigid fit leaves out below the top of the lips: the outer lip loop, the
    chin, the jaw and the lower cheeks (not the inner lip loop: it borders the mouth opening,
    where a ray may pass into the mouth)."""
    from ..face_model import NUM_MESH_POINTS

    ids = np.setdiff1d(np.arange(NUM_MESH_POINTS), np.concatenate([template.rigid, template.lips_inner]))
    top_of_lips = template.vertices[template.lips_outer, 1].min()  # the head frame's y points down
    return ids[template.vertices[ids, 1] >= top_of_lips]


def lower_face_points(landmarks: np.ndarray, valid: np.ndarray, template) -> np.ndarray:
    """Every frame's lower-face landmarks in the head frame [N,Q,3] (a similarity fit of its 3-D
    landmarks onto the template's rigid points, as the lip feature is measured); NaN on frames
    without trusted landmarks. The lips' depth from the landmarker agrees with their position
    triangulated from a clip's turning head within 2 mm on id04 and id05 (docs/RESULTS.md)."""
    from ..prepare.signals import align_to_head_frame

    points = align_to_head_frame(landmarks.astype(np.float64), template)[:, lower_face_ids(template)]
    points[~np.asarray(valid, bool)] = np.nan
    return points


def load_face_depth_points(avatar_dir: str | Path, lower_face: bool = False) -> FaceDepthPoints:
    """The avatar's fitted face shape (pose.npz) with the template's normals at those points; with
    `lower_face`, every frame's lips and lower face as well (`lower_face_points`)."""
    from ..face_model import load_face_template

    root = Path(avatar_dir)
    pose = np.load(root / "pose.npz")
    if "shape" not in pose.files or "shape_ids" not in pose.files:
        raise InputError(f"{avatar_dir}/pose.npz has no fitted face shape: prepare the avatar again for face depth")
    template = load_face_template()
    normals = template_normals(template.vertices, template.tessellation_edges)
    face = FaceDepthPoints(points=pose["shape"].astype(np.float64), normals=normals[pose["shape_ids"]])
    if not lower_face:
        return face
    moving = lower_face_points(np.load(root / "landmarks.npy"), np.load(root / "valid.npy"), template)
    return FaceDepthPoints(face.points, face.normals, moving, normals[lower_face_ids(template)])


def face_depth_points_for(config, avatar_dir: str | Path) -> FaceDepthPoints | None:
    """The face points a run with this TrainConfig supervises (None when its face_depth_weight is
    0), after checking its face depth settings: a bad one is a one-line error."""
    if config.face_depth_weight <= 0:
        return None
    if config.face_depth_rays < 1 or not -1.0 <= config.face_depth_min_facing < 1.0:
        raise InputError(f"face depth needs face_depth_rays >= 1 and face_depth_min_facing in [-1, 1), "
                         f"not {config.face_depth_rays} and {config.face_depth_min_facing}")
    return load_face_depth_points(avatar_dir, lower_face=config.face_depth_lower_face)


def visible_points(face: FaceDepthPoints, rotation: np.ndarray, translation: np.ndarray,
                   min_facing: float) -> np.ndarray:
    """Indices of the points whose normal faces the camera: cos(normal, towards the camera) >
    `min_facing`. A face is nearly convex away from the nose, so this stands in for a depth test
    (a point grazing the silhouette, or behind the turned cheek, is left out)."""
    centre = -rotation.T @ translation  # the camera in the head frame
    towards = centre - face.points
    towards /= np.linalg.norm(towards, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):  # NaN points (a frame without landmarks) never face it
        return np.nonzero((towards * face.normals).sum(-1) > min_facing)[0]


def depth_rays(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head-frame points [M,3] seen by a frame (pose head -> camera) -> rays from its camera
    centre through them: origins [M,3], unit directions [M,3], distance to each point [M]."""
    centre = -rotation.T @ translation
    offsets = points - centre
    distance = np.linalg.norm(offsets, axis=-1)
    return np.broadcast_to(centre, points.shape).copy(), offsets / distance[:, None], distance


def depth_rays_reference(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, focal: float,
                         cx: float, cy: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow reference: project each point to its (sub-)pixel, build that pixel's ray with
    `data.rays.pixel_rays_reference`, and take the point's distance in camera coordinates."""
    from ..data.rays import pixel_rays_reference

    origins, directions, distances = [], [], []
    for point in points:
        camera = rotation @ point + translation
        x, y = focal * camera[0] / camera[2] + cx, focal * camera[1] / camera[2] + cy
        origin, direction = pixel_rays_reference(rotation, translation, focal, cx, cy, x - 0.5, y - 0.5)
        origins.append(origin)
        directions.append(direction)
        distances.append(np.linalg.norm(camera))
    return np.array(origins), np.array(directions), np.array(distances)


def face_depth_batch(batch: dict[str, torch.Tensor], face: FaceDepthPoints, count: int, min_facing: float,
                     rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
    """Rays through up to `count` visible face points of the batch's frame (drawn without
    replacement), with that frame's conditioning; None when no point faces the camera. The
    rays use the tracked pose, as the batch's own rays do before any pose correction."""
    rotation = batch["rotation"].double().numpy()
    translation = batch["translation"].double().numpy()
    face = face.at(int(batch["frame"]))
    visible = visible_points(face, rotation, translation, min_facing)
    if not len(visible):
        return None
    chosen = rng.choice(visible, size=min(count, len(visible)), replace=False)
    origins, directions, distance = depth_rays(face.points[chosen], rotation, translation)
    kept = {k: v for k, v in batch.items() if k in ("frame", "eye_ratio", "lip_feature", "audio", "rotation",
                                                     "translation")}
    return {**kept,
            "origins": torch.from_numpy(origins).float(),
            "directions": torch.from_numpy(directions).float(),
            "background": torch.zeros(len(chosen), 3),
            "depth_target": torch.from_numpy(distance).float()}


def face_depth_error(depth: torch.Tensor, opacity: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[R] signed termination error in metres, sum_k w_k (t_k - D) (+: the surface is behind the point)."""
    return depth - opacity * target


def face_depth_loss(depth: torch.Tensor, opacity: torch.Tensor, target: torch.Tensor, delta_cm: float = 1.0) -> torch.Tensor:
    """Mean Huber penalty of `face_depth_error`, in centimetres (quadratic within `delta_cm`)."""
    error = face_depth_error(depth, opacity, target.to(depth.device)) / DEPTH_UNIT_M
    return torch.nn.functional.huber_loss(error, torch.zeros_like(error), delta=delta_cm)
