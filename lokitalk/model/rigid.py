"""Rigid motion of the body relative to the head, for the torso stage's camera-rigid path.

The head pose of frame n is the camera: a head-frame point x sits at R_n x + t_n in the camera's
frame. The head is rigid in the head frame, but a body that stays still in front of a fixed
camera is not: in the head frame it moves whenever the head turns. Where that body sits under
a reference pose (R_ref, t_ref), the training frames' mean, is

    x_ref = R_ref^T (R_n x + t_n - t_ref),

and `camera_rigid_offset` gives x_ref - x, the displacement that brings frame n's body point back
to the canonical body (lokitalk.model.deformation, `torso_motion="rigid"`).

A real body does not keep quite still: it breathes, shrugs and leans, and on id01's training
frames the rendered torso sits 1-2 px off in a direction that changes from frame to frame
(docs/RESULTS.md, "What the neck band's error is"). Training with body refinement (lokitalk.train.body_refine)
gives each training frame a small rigid correction (w_n, u_n) of the body in the reference body
frame, x_ref' = Exp(w_n) x_ref + u_n: rotation about the reference head centre, where the neck
is near. Frames without one (every frame rendered after training) keep the mean body, zero.

Poses travel through the nets as 6-vectors (rotation vector, translation: `field.pose_vector`);
`rotation_from_vector` is Rodrigues' formula, `rotation_from_vector_reference` the matrix
exponential that tests compare it with.
"""

from __future__ import annotations

import numpy as np
import torch


def skew(v: torch.Tensor) -> torch.Tensor:
    """[B,3] -> [B,3,3] cross-product matrices: skew(v) @ w = v x w."""
    zero = torch.zeros_like(v[:, 0])
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    return torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1),
                        torch.stack([-y, x, zero], -1)], 1)


def rotation_from_vector(rotvec: torch.Tensor) -> torch.Tensor:
    """[B,3] rotation vectors (axis * angle, radians) -> [B,3,3] rotation matrices, by Rodrigues'
    formula R = I + sin(a)/a K + (1 - cos(a))/a^2 K^2 with K = skew(rotvec). Below 1e-4 rad the
    series' first terms stand in for the two ratios (no division by ~0)."""
    angle_sq = (rotvec * rotvec).sum(-1)
    angle = angle_sq.clamp(min=1e-12).sqrt()
    small = angle < 1e-4
    sin_ratio = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    cos_ratio = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / angle.clamp(min=1e-4) ** 2)
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + sin_ratio[:, None, None] * k + cos_ratio[:, None, None] * (k @ k)


def rotation_from_vector_reference(rotvec: torch.Tensor) -> torch.Tensor:
    """Slow reference: the matrix exponential of the cross-product matrix."""
    return torch.linalg.matrix_exp(skew(rotvec.double())).to(rotvec.dtype)


def mean_pose(rotations: np.ndarray, translations: np.ndarray) -> tuple[float, ...]:
    """Frames' head poses [N,3,3], [N,3] -> their mean as a 6-tuple (rotation vector, translation):
    the rotation nearest (Frobenius) to the mean matrix, the mean translation."""
    from .field import pose_vector

    u, _, vt = np.linalg.svd(np.asarray(rotations, np.float64).mean(0))
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    translation = np.asarray(translations, np.float64).mean(0)
    return tuple(float(v) for v in pose_vector(torch.from_numpy(rotation), torch.from_numpy(translation)))


def camera_rigid_offset(x: torch.Tensor, pose: torch.Tensor, reference: torch.Tensor,
                        body: torch.Tensor | None = None) -> torch.Tensor:
    """Head-frame points x [M,3] of a frame with pose [1 or M, 6] -> [M,3] displacement to where a
    camera-rigid body point sits under the reference pose [6]: R_ref^T (R x + t - t_ref) - x.
    `body` [1, 6]: the frame's body correction (rotation vector, translation in metres), applied
    in the reference body frame: Exp(w) R_ref^T (R x + t - t_ref) + u - x.
    In float32 whatever the autocast: in bfloat16 the map would err by ~1 mm, half a pixel."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        body = None if body is None else body.to(dtype)
        return _camera_rigid_offset(x.to(dtype), pose.to(dtype), reference.to(dtype), body)


def _camera_rigid_offset(x: torch.Tensor, pose: torch.Tensor, reference: torch.Tensor,
                         body: torch.Tensor | None = None) -> torch.Tensor:
    rotation = rotation_from_vector(pose[:, :3])  # [1 or M, 3, 3]
    reference_rotation = rotation_from_vector(reference[None, :3])[0]
    shift = (pose[:, 3:] - reference[3:]) @ reference_rotation  # R_ref^T (t - t_ref), [1 or M, 3]
    if pose.shape[0] == 1:  # one frame's pose for every point: one 3x3 map
        mapped = x @ (reference_rotation.T @ rotation[0]).T + shift
    else:
        mapped = torch.einsum("ij,mik,mk->mj", reference_rotation, rotation, x) + shift
    if body is not None:
        mapped = mapped @ rotation_from_vector(body[:, :3])[0].T + body[:, 3:]
    return mapped - x
