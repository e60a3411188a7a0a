"""Per-identity parts of a multi-identity talking head, and the ID encoder that predicts them.

ID-aware knowledge transfer (../shared/DESIGN.md): a prior pretrained on many people shares the
deformation nets, the density and colour heads and the canonical tri-plane grid; each identity
has

- a dynamic feature (enters the deformation net like a driving signal) and one layer of the
  deformation net generated from it by a shared hypernetwork (`Hypernetwork`);
- a geometry feature (density head input) and an appearance feature (colour head input);
- a residual canonical-offset grid: a few coarse tri-plane levels whose features are added to the
  shared grid's first levels (so an identity moves and reshapes the shared head coarsely, while
  fine detail stays shared until fine-tuning);
- a fixed affine map from the avatar's own lip basis to the prior's shared, whitened lip space
  (lokitalk.audio2motion.shared_basis), so that one deformation net reads every person's lips;
- a fixed reference pose, the mean of the person's training poses, where a camera-rigid torso
  stage holds the body (lokitalk.model.rigid): each person sits in front of the camera in their own way.

`IdentityEncoder` maps a few frames of a person (person matte applied) with their head pose and
focal length to those parts; it is trained jointly with the shared nets during pretraining, where
each identity's learned parts are residuals on top of the encoder's output. A new person starts
from the encoder's output (`IdentityParts.load_codes`) and is fine-tuned.

All parts start at zero: a zero identity leaves the shared model unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .deformation import DeformationIdentity
from .encoding import PLANE_AXES, TriPlaneConfig


@dataclass(frozen=True)
class IdentityConfig:
    code_dim: int = 16  # width of each of the dynamic, appearance and geometry features
    offset_levels: int = 2  # the canonical-offset grid covers the shared grid's first levels
    offset_base_resolution: int = 16
    offset_max_resolution: int = 32
    source_lip_dim: int = 16  # the avatar's own lip-feature width (input of the lip map)
    encoder_frames: int = 4  # reference frames the ID encoder sees
    encoder_size: int = 64  # ... resized to this many pixels a side
    encoder_width: int = 32
    hyper_init: float = 1e-3  # std of the hypernetwork's weights (the generated layer starts ~0)
    # each identity's face moved onto the prior's mean face before the deformation nets read it
    # (lokitalk.model.face_alignment); False: every person in their own head frame (priors before it)
    face_alignment: bool = False

    def offset_resolutions(self) -> list[int]:
        return TriPlaneConfig(levels=self.offset_levels, base_resolution=self.offset_base_resolution,
                              max_resolution=self.offset_max_resolution).resolutions()


class IdentityCodes(NamedTuple):
    """The learnable per-identity values (the encoder's output has the same form)."""

    dynamic: torch.Tensor  # [D]
    appearance: torch.Tensor  # [D]
    geometry: torch.Tensor  # [D]
    offset: list[torch.Tensor]  # per offset level: [3, F, r, r] planes


def sample_planes(planes: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Dense tri-plane lookup, as TriPlaneEncoding: planes [3,F,r,r], x [M,3] in [-1,1] ->
    [M, 3, levels, F]."""
    x = x.clamp(-1.0, 1.0)
    uv = torch.stack([x[:, list(axes)] for axes in PLANE_AXES], dim=0)  # [3,M,2]
    out = []
    for grid in planes:
        sampled = F.grid_sample(grid.to(x.dtype).transpose(2, 3), uv[:, None], mode="bilinear",
                                padding_mode="border", align_corners=True)  # [3,F,1,M]
        out.append(sampled[:, :, 0].permute(2, 0, 1))  # [M,3,F]
    return torch.stack(out, dim=2)


@dataclass
class ResolvedIdentity:
    """One identity's parts, ready for a forward pass (codes plus any encoder output)."""

    dynamic: torch.Tensor
    appearance: torch.Tensor
    geometry: torch.Tensor
    offset: list[torch.Tensor]
    lip_matrix: torch.Tensor  # [source_lip_dim, lip_dim]
    lip_bias: torch.Tensor  # [lip_dim]
    reference_pose: torch.Tensor  # [6] (rotation vector, translation); used by a rigid torso stage only
    alignment: tuple[torch.Tensor, torch.Tensor] | None = None  # (anchors, offsets) [K,3] each, face alignment only

    def map_lip(self, lip: torch.Tensor) -> torch.Tensor:
        return lip.to(self.lip_matrix.dtype) @ self.lip_matrix + self.lip_bias

    def feature_offset(self, normalised: torch.Tensor, grid: TriPlaneConfig) -> torch.Tensor:
        return offset_features(self.offset, normalised, grid)


def offset_features(offset: list[torch.Tensor], normalised: torch.Tensor, grid: TriPlaneConfig) -> torch.Tensor:
    """An identity's offset grid at [M,3] points in [-1,1] -> [M, grid.output_dim]: its features in
    the shared grid's layout ([plane][level][feature]), zero on the levels it does not cover."""
    feats = sample_planes(offset, normalised)  # [M,3,K,F]
    feats = F.pad(feats, (0, 0, 0, grid.levels - feats.shape[2]))
    return feats.reshape(normalised.shape[0], -1)


class IdentityParts(nn.Module):
    """The parameters of one identity (and its fixed lip map)."""

    def __init__(self, config):
        """`config`: the prior's ModelConfig (with `identity` set)."""
        super().__init__()
        ident: IdentityConfig = config.identity
        grid = config.field.grid
        if ident.offset_levels > grid.levels:
            raise ValueError("the offset grid cannot have more levels than the shared grid")
        d = ident.code_dim
        self.dynamic = nn.Parameter(torch.zeros(d))
        self.appearance = nn.Parameter(torch.zeros(d))
        self.geometry = nn.Parameter(torch.zeros(d))
        self.offset = nn.ParameterList([nn.Parameter(torch.zeros(3, grid.features_per_level, r, r))
                                        for r in ident.offset_resolutions()])
        lip_dim = config.deformation.lip_dim
        self.register_buffer("lip_matrix", torch.eye(ident.source_lip_dim, lip_dim))
        self.register_buffer("lip_bias", torch.zeros(lip_dim))
        self.register_buffer("reference_pose", torch.zeros(6))
        if ident.face_alignment:  # (model.face_alignment; zero offsets move nothing)
            from .face_alignment import ANCHOR_COUNT

            self.register_buffer("alignment_anchors", torch.zeros(ANCHOR_COUNT, 3))
            self.register_buffer("alignment_offsets", torch.zeros(ANCHOR_COUNT, 3))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # parts saved before the reference pose (priors and models with a learned torso stage,
        # which never read it) load with the zero pose
        state_dict.setdefault(prefix + "reference_pose", torch.zeros(6))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def codes(self) -> IdentityCodes:
        return IdentityCodes(self.dynamic, self.appearance, self.geometry, list(self.offset))

    def resolve(self, base: IdentityCodes | None = None) -> ResolvedIdentity:
        """The parts for a forward pass; `base` (the encoder's output) is added when given."""
        own = self.codes()
        if base is not None:
            own = IdentityCodes(*(a + b for a, b in zip(own[:3], base[:3])),
                                [a + b for a, b in zip(own.offset, base.offset)])
        alignment = (self.alignment_anchors, self.alignment_offsets) if hasattr(self, "alignment_anchors") else None
        return ResolvedIdentity(*own, self.lip_matrix, self.lip_bias, self.reference_pose, alignment)

    @torch.no_grad()
    def load_codes(self, codes: IdentityCodes) -> None:
        """Set the parameters to `codes` (a new person starting from the encoder's output)."""
        for param, value in zip(self.codes()[:3], codes[:3]):
            param.copy_(value)
        for param, value in zip(self.offset, codes.offset):
            param.copy_(value)

    @torch.no_grad()
    def set_lip_map(self, matrix: np.ndarray | torch.Tensor, bias: np.ndarray | torch.Tensor) -> None:
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        if matrix.shape != self.lip_matrix.shape:
            raise ValueError(f"lip map {tuple(matrix.shape)} does not fit {tuple(self.lip_matrix.shape)}: "
                             "the avatar's lip basis differs in size from the prior's source_lip_dim")
        self.lip_matrix.copy_(matrix)
        self.lip_bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    @torch.no_grad()
    def set_reference_pose(self, pose) -> None:
        """The person's reference pose, 6 numbers (lokitalk.model.rigid.mean_pose of their training frames)."""
        pose = torch.as_tensor(pose, dtype=torch.float32)
        if pose.shape != (6,):
            raise ValueError(f"a reference pose is 6 numbers (rotation vector, translation), not {tuple(pose.shape)}")
        self.reference_pose.copy_(pose)

    @torch.no_grad()
    def set_alignment(self, anchors, target) -> None:
        """The person's mean anchor points and the prior's ([K,3] each, metres, head frame):
        their face is moved by `target - anchors` there (lokitalk.model.face_alignment)."""
        if not hasattr(self, "alignment_anchors"):
            raise ValueError("these identity parts have no face alignment (IdentityConfig.face_alignment is off)")
        anchors = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
        target = torch.as_tensor(np.asarray(target), dtype=torch.float32)
        if anchors.shape != self.alignment_anchors.shape or target.shape != anchors.shape:
            raise ValueError(f"face alignment needs anchors and target of shape {tuple(self.alignment_anchors.shape)}, "
                             f"not {tuple(anchors.shape)} and {tuple(target.shape)}")
        self.alignment_anchors.copy_(anchors)
        self.alignment_offsets.copy_(target - anchors)


class Hypernetwork(nn.Module):
    """Shared: dynamic feature [D] -> the weights and bias of one hidden layer of the deformation
    net. Zero-initialised bias and small weights: a zero feature generates a zero layer."""

    def __init__(self, config):
        super().__init__()
        self.hidden = config.deformation.hidden
        h = self.hidden
        self.net = nn.Linear(config.identity.code_dim, h * h + h)
        nn.init.normal_(self.net.weight, std=config.identity.hyper_init)
        nn.init.zeros_(self.net.bias)

    def layer(self, dynamic: torch.Tensor, reference_pose: torch.Tensor | None = None,
              alignment: tuple[torch.Tensor, torch.Tensor] | None = None) -> DeformationIdentity:
        """The deformation net's identity input; `reference_pose` [6] (a rigid torso stage) and
        `alignment` (face alignment) pass through."""
        h = self.hidden
        out = self.net(dynamic)
        return DeformationIdentity(dynamic[None], out[:h * h].view(h, h), out[h * h:], reference_pose, alignment)


class IdentityEncoder(nn.Module):
    """A few frames of one person (matte applied, [R,3,S,S] in [0,1]) with their cameras ([R,7]:
    head-pose vector and focal / image width) -> IdentityCodes. Per frame a small CNN and the
    camera give a feature; features are averaged over frames (any number), then linear heads
    (zero-initialised) give the codes and the offset grid's values."""

    def __init__(self, config):
        super().__init__()
        ident: IdentityConfig = config.identity
        w = ident.encoder_width
        layers: list[nn.Module] = []
        channels, size = 3, ident.encoder_size
        while size > 4:
            layers += [nn.Conv2d(channels, w, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            channels, size = w, size // 2
        self.cnn = nn.Sequential(*layers)
        # layer norms keep the feature at unit scale whatever the images, so the linear heads
        # cannot grow the parts without bound (densities would saturate and stop learning)
        self.frame_mlp = nn.Sequential(nn.Linear(w * size * size + 7, 2 * w), nn.LayerNorm(2 * w),
                                       nn.ReLU(inplace=True), nn.Linear(2 * w, 2 * w))
        self.norm = nn.LayerNorm(2 * w)
        d = ident.code_dim
        feats = config.field.grid.features_per_level
        self.offset_shapes = [(3, feats, r, r) for r in ident.offset_resolutions()]
        self.code_head = nn.Linear(2 * w, 3 * d)
        self.offset_head = nn.Linear(2 * w, sum(int(np.prod(s)) for s in self.offset_shapes))
        for head in (self.code_head, self.offset_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.code_dim = d

    def forward(self, images: torch.Tensor, cameras: torch.Tensor) -> IdentityCodes:
        per_frame = self.cnn(images).flatten(1)
        feature = self.norm(self.frame_mlp(torch.cat([per_frame, cameras], -1)).mean(0))
        d = self.code_dim
        codes = self.code_head(feature)
        flat = self.offset_head(feature)
        offset, start = [], 0
        for shape in self.offset_shapes:
            n = int(np.prod(shape))
            offset.append(flat[start:start + n].view(shape))
            start += n
        return IdentityCodes(codes[:d], codes[d:2 * d], codes[2 * d:], offset)


def encoder_inputs(avatar, frames: np.ndarray, config: IdentityConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The ID encoder's input for `avatar`: `config.encoder_frames` frames evenly spread over
    `frames` (training frames only), person matte applied, resized; and their cameras."""
    import cv2

    from .field import pose_vector

    frames = np.asarray(frames)
    pick = frames[np.linspace(0, len(frames) - 1, min(config.encoder_frames, len(frames))).round().astype(int)]
    size = config.encoder_size
    images, cameras = [], []
    for index in pick:
        index = int(index)
        rgb = avatar.frame(index).astype(np.float32) / 255.0
        alpha = avatar.alpha(index).astype(np.float32)[..., None] / 255.0
        images.append(cv2.resize(rgb * alpha, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1))
        pose = pose_vector(torch.from_numpy(avatar.rotation[index]).float(),
                           torch.from_numpy(avatar.translation[index]).float())
        cameras.append(torch.cat([pose, torch.tensor([avatar.camera.focal_px / avatar.camera.width])]))
    return torch.from_numpy(np.stack(images)), torch.stack(cameras)
