"""Deformation fields: where a sample point of frame n sits in the shared canonical space.

Region-specific (LokiTalk), two cascaded stages:
- stage 1, face: dx_face = f(posenc(x), a_lip(x) * lip, a_eye(x) * eye). a_lip and a_eye are
  per-point attentions in [0, 1] predicted from the position alone; rendered into the image
  they are supervised to match the mouth and eye masks (`attention_loss` in train/losses.py),
  which ties each signal to its own region: where a_lip is 0 the lip feature cannot move a
  point, whatever the network learns.
- stage 2, torso: dx_torso = a_torso(x1) * g(posenc(x1), pose, h1), x1 = x + dx_face, h1 the
  stage-1 hidden state; a_torso is supervised with the neck and torso masks. The head pose is
  the camera, so the head stays rigid in the head frame while the neck and torso, which do not
  turn with the head, are moved back by this stage.

Global (the ER-NeRF-like baseline, `--deformation global`): one network conditioned on all
signals at once, dx = f(posenc(x), lip, eye, pose), no region ties. Same width and depth, so
a comparison at the same step budget measures the region ties, not capacity.

Both start as the identity (last layers zero-initialised): a fresh model renders the canonical
field unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DeformationConfig:
    kind: str = "region"  # "region" or "global"
    posenc_frequencies: int = 6
    hidden: int = 64
    lip_dim: int = 16
    eye_dim: int = 2
    pose_dim: int = 6  # rotation vector and translation of the head -> camera pose
    signal_dim: int = 32  # each signal is projected to this width before it enters the MLP


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[M,3] -> [M, 3 + 6 * frequencies]: x, sin(2^k pi x), cos(2^k pi x)."""
    scales = (2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype)) * torch.pi
    angles = x[..., None] * scales  # [M,3,F]
    return torch.cat([x, torch.sin(angles).flatten(1), torch.cos(angles).flatten(1)], dim=-1)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, zero_last: bool = False) -> nn.Sequential:
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        mods += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    last = nn.Linear(dim, out_dim)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)


@dataclass
class DeformationOutput:
    canonical: torch.Tensor  # [M,3] points in the canonical space
    attention: dict[str, torch.Tensor]  # name -> [M] per-point attention (region model only)
    offset: torch.Tensor  # [M,3] total displacement


class RegionDeformation(nn.Module):
    def __init__(self, config: DeformationConfig):
        super().__init__()
        self.config = config
        pe = 3 + 6 * config.posenc_frequencies
        s = config.signal_dim
        self.lip_proj = nn.Linear(config.lip_dim, s)
        self.eye_proj = nn.Linear(config.eye_dim, s)
        self.pose_proj = nn.Linear(config.pose_dim, s)
        self.face_attention = mlp(pe, config.hidden, 2, layers=1)  # -> (lip, eye) logits
        self.face_trunk = mlp(pe + 2 * s, config.hidden, config.hidden, layers=1)
        self.face_out = nn.Linear(config.hidden, 3)
        self.torso_attention = mlp(pe, config.hidden, 1, layers=1)
        self.torso_net = mlp(pe + s + config.hidden, config.hidden, 3, layers=2, zero_last=True)
        nn.init.zeros_(self.face_out.weight)
        nn.init.zeros_(self.face_out.bias)

    def forward(self, x: torch.Tensor, lip: torch.Tensor, eye: torch.Tensor, pose: torch.Tensor) -> DeformationOutput:
        """x [M,3]; lip [M or 1, lip_dim], eye [M or 1, eye_dim], pose [M or 1, pose_dim]: one row
        per point, or a single row for a batch from one frame (projected once, then broadcast)."""
        f = self.config.posenc_frequencies
        enc = positional_encoding(x, f)
        att = torch.sigmoid(self.face_attention(enc))
        a_lip, a_eye = att[:, 0], att[:, 1]
        lip_in = a_lip[:, None] * self.lip_proj(lip)  # [M,s] (broadcast from [1,s] when shared)
        eye_in = a_eye[:, None] * self.eye_proj(eye)
        hidden = self.face_trunk(torch.cat([enc, lip_in, eye_in], -1))
        dx_face = self.face_out(torch.relu(hidden))
        x1 = x + dx_face
        enc1 = positional_encoding(x1, f)
        a_torso = torch.sigmoid(self.torso_attention(enc1))[:, 0]
        pose_in = self.pose_proj(pose).expand(x.shape[0], -1)
        dx_torso = a_torso[:, None] * self.torso_net(torch.cat([enc1, pose_in, hidden], -1))
        canonical = x1 + dx_torso
        return DeformationOutput(canonical, {"lip": a_lip, "eye": a_eye, "torso": a_torso}, canonical - x)


class GlobalDeformation(nn.Module):
    def __init__(self, config: DeformationConfig):
        super().__init__()
        self.config = config
        pe = 3 + 6 * config.posenc_frequencies
        s = config.signal_dim
        self.signal_proj = nn.Linear(config.lip_dim + config.eye_dim + config.pose_dim, 3 * s)
        self.net = mlp(pe + 3 * s, config.hidden, 3, layers=3, zero_last=True)

    def forward(self, x: torch.Tensor, lip: torch.Tensor, eye: torch.Tensor, pose: torch.Tensor) -> DeformationOutput:
        enc = positional_encoding(x, self.config.posenc_frequencies)
        signals = self.signal_proj(torch.cat([lip, eye, pose], -1)).expand(x.shape[0], -1)
        dx = self.net(torch.cat([enc, signals], -1))
        return DeformationOutput(x + dx, {}, dx)


def build_deformation(config: DeformationConfig) -> nn.Module:
    if config.kind == "region":
        return RegionDeformation(config)
    if config.kind == "global":
        return GlobalDeformation(config)
    raise ValueError(f"deformation must be 'region' or 'global', not {config.kind!r}")
