"""One lip-motion space for every identity.

Each prepared avatar's `lip_feature` uses its own PCA basis, so feature 3 of one person means
nothing for another. Here every identity's mouth (40 lip points in the head frame) is expressed
as an offset from that identity's own rest (closed) mouth, scaled by

    scale = template mouth width / this identity's rest mouth width

so that a wide and a narrow mouth doing the same relative motion give the same offsets (the
offsets are in "template-mouth metres": metres for a mouth as wide as the face template's,
6.4 cm). The offsets of all identities are pooled (each identity weighted equally, however many
frames it has) and an uncentred PCA about zero gives the shared basis.

Semantics of the returned `LipBasis`: `neutral` is all zeros, because the rest mouth is removed
(and the size normalised) per identity before projection: feature 0 = that identity's own rest
mouth. Use `encode_identity` / `decode_identity` (or `encode_points` / `decode_points` with an
`IdentityMouth`) rather than `LipBasis.encode` / `decode` directly, which skip the per-identity
rest mouth and scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..face_model import load_face_template
from ..prepare.signals import LipBasis, rest_mouth

if TYPE_CHECKING:
    from ..data.avatar import Avatar


def template_mouth() -> np.ndarray:
    """[40,3] the face template's mouth points (outer loop then inner loop), metres."""
    template = load_face_template()
    return template.vertices[template.mouth_points].astype(np.float64)


def mouth_width(points: np.ndarray) -> np.ndarray:
    """Corner-to-corner width (x extent of the outer lip loop) of [..., M, 3] mouth points."""
    outer = points[..., : points.shape[-2] // 2, 0]
    return outer.max(-1) - outer.min(-1)


TEMPLATE_MOUTH_WIDTH = float(mouth_width(template_mouth()))


@dataclass(frozen=True)
class IdentityMouth:
    """What maps one identity's mouth points to and from the shared space."""

    rest: np.ndarray  # [M,3] the rest (closed) mouth, head frame, metres
    scale: float  # template mouth width / rest mouth width (1.0 when not normalising)


def identity_mouth(points: np.ndarray, frames: np.ndarray | None = None,
                   normalise_size: bool = True) -> IdentityMouth:
    """Rest mouth (`rest_mouth`: mean of the most closed frames) and size scale from the mouth
    points [N,M,3] of `frames` (e.g. the valid training frames: nothing from test frames)."""
    use = points if frames is None else points[frames]
    rest = rest_mouth(use).reshape(-1, 3)
    scale = TEMPLATE_MOUTH_WIDTH / float(mouth_width(rest)) if normalise_size else 1.0
    return IdentityMouth(rest, scale)


def normalised_offsets(points: np.ndarray, mouth: IdentityMouth) -> np.ndarray:
    """[N,M,3] mouth points -> [N,3M] size-normalised offsets from the rest mouth."""
    return ((points - mouth.rest) * mouth.scale).reshape(len(points), -1)


def encode_points(points: np.ndarray, mouth: IdentityMouth, basis: LipBasis) -> np.ndarray:
    return (normalised_offsets(points, mouth) - basis.neutral) @ basis.components.T


def decode_points(features: np.ndarray, mouth: IdentityMouth, basis: LipBasis) -> np.ndarray:
    """[N,K] shared features -> [N,M,3] this identity's mouth points, head frame, metres."""
    offsets = (features @ basis.components + basis.neutral).reshape(len(features), -1, 3)
    return mouth.rest + offsets / mouth.scale


def fit_shared_basis_arrays(mouths: list[np.ndarray], identities: list[str], components: int = 16,
                            frames: list[np.ndarray] | None = None,
                            normalise_size: bool = True) -> LipBasis:
    """The core of `fit_shared_lip_basis` on plain arrays: `mouths[i]` [N_i,M,3] are the mouth
    points of clip i of identity `identities[i]`; `frames[i]` the frames to use (default all).
    The rest mouth is per clip (clips of one person can sit slightly differently in the head
    frame); the weighting is per identity: every identity counts as much as any other."""
    frames = frames if frames is not None else [np.arange(len(m)) for m in mouths]
    offsets = [normalised_offsets(m[f], identity_mouth(m, f, normalise_size)) for m, f in zip(mouths, frames)]
    per_identity: dict[str, int] = {}
    for name, off in zip(identities, offsets):
        per_identity[name] = per_identity.get(name, 0) + len(off)
    # Weighted uncentred PCA: row weight 1/n_identity, so sum of weights = number of identities.
    rows = np.concatenate([off / np.sqrt(per_identity[name]) for name, off in zip(identities, offsets)])
    _, sing, vt = np.linalg.svd(rows, full_matrices=False)
    k = min(components, vt.shape[0])
    # Sign convention: each component's largest-magnitude entry is positive (stable across runs).
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    vt = vt * signs[:, None]
    variance = sing[:k] ** 2 / len(per_identity)  # identity-balanced mean square along each axis
    template = load_face_template()
    return LipBasis(template.mouth_points.astype(np.int32), np.zeros(rows.shape[1]), vt[:k], variance)


def identity_name(avatar: "Avatar") -> str:
    """Identity = the clip folder's name up to the first '_' (id01_a, id01_b -> id01)."""
    return avatar.root.name.split("_")[0]


def head_mouth_points(avatar: "Avatar") -> np.ndarray:
    """[N,40,3] the avatar's mouth points in the head frame (signals.npz `head_landmarks`)."""
    template = load_face_template()
    head = np.load(avatar.root / "signals.npz")["head_landmarks"]
    return head[:, template.mouth_points].astype(np.float64)


def training_frames(avatar: "Avatar") -> np.ndarray:
    """Valid frames of the train split."""
    frames = np.asarray(avatar.split.train, int)
    return frames[avatar.valid[frames]]


def avatar_mouth(avatar: "Avatar", normalise_size: bool = True) -> IdentityMouth:
    return identity_mouth(head_mouth_points(avatar), training_frames(avatar), normalise_size)


def fit_shared_lip_basis(avatars: list["Avatar"], components: int = 16,
                         normalise_size: bool = True) -> LipBasis:
    """Shared lip basis from the valid train-split frames of all `avatars`, balanced per identity."""
    return fit_shared_basis_arrays([head_mouth_points(a) for a in avatars],
                                   [identity_name(a) for a in avatars], components,
                                   [training_frames(a) for a in avatars], normalise_size)


def encode_identity(avatar: "Avatar", basis: LipBasis, normalise_size: bool = True) -> np.ndarray:
    """[N,K] every frame of `avatar` in the shared space (rest mouth from its training frames)."""
    return encode_points(head_mouth_points(avatar), avatar_mouth(avatar, normalise_size), basis)


def decode_identity(features: np.ndarray, avatar: "Avatar", basis: LipBasis,
                    normalise_size: bool = True) -> np.ndarray:
    """[N,K] shared features -> [N,40,3] mouth points of `avatar`'s identity, head frame, metres."""
    return decode_points(features, avatar_mouth(avatar, normalise_size), basis)


def opening_from_mouth(points: np.ndarray) -> np.ndarray:
    """Mean lip gap (inner-lip area / mouth width) of [N,M,3] mouth points: the same measure as
    `signals.mouth_opening`, on the 40 mouth points (outer loop then inner loop)."""
    from ..face_model import polygon_area

    half = points.shape[1] // 2
    return polygon_area(points[:, half:, :2]) / np.maximum(mouth_width(points), 1e-9)
