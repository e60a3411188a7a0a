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
  turn with the head, are moved back by this stage. With `torso_motion="rigid"` the stage is
  dx_torso = a_torso(x1) * (r(x1, pose) + g(...)), r the displacement of a body held still in
  front of the camera (model.rigid): a_torso then works as a skinning weight between head and body.
  With `torso_attention_frame="head+body"` a_torso also reads x1 + r(x1, pose), where the point
  sits in the body's frame.

With `separate_eyes` the eyes get their own branch of stage 1: dx_eye = a_eye(x) *
e(posenc(x), a_eye(x) * eye), added to the lip trunk's dx_face, which then sees the lip feature
only. Sharing one trunk, the two signals compete for the same hidden units: aiming training
rays at the eyes then weakened how the lips follow their signal (docs/RESULTS.md, "Eye rays").

Global (the ER-NeRF-like baseline, `--deformation global`): one network conditioned on all
signals at once, dx = f(posenc(x), lip, eye, pose), no region ties. Same width and depth, so
a comparison at the same step budget measures the region ties, not capacity.

Both start as the identity (last layers zero-initialised): a fresh model renders the canonical
field unchanged; a rigid torso stage alone starts moving points, by its low starting attention
(0.12) times the camera-rigid displacement.

Position encoding (`position_encoding`): "frequency" feeds the nets sin/cos of the position in
metres (finest period 6 cm at 6 frequencies: smooth, but coarse for an eyelid, which moves ~1 cm
across the eye; with 20 s of video or more training adds a 7th band, 3 cm: train.config
`fine_deformation_seconds`; `eye_posenc_frequencies` gives the finer bands to the eye region
only, an experiment); "grid" feeds them the position normalised to the field's box plus a
small multiresolution tri-plane grid of learned features (ER-NeRF's choice for its
audio-spatial encoder): local, so a displacement can be confined to a centimetre-sized region.

Multi-identity priors (lokitalk.model.identity): with `identity_dim` > 0 either net also takes a
per-identity dynamic feature (projected like a signal) and one hypernetwork-generated layer, a
residual `h + W relu(h) + b` on the hidden state (after the face trunk; after the first layer of
the global net). `identity_dim` = 0 (the default) builds exactly the single-person nets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .face_alignment import alignment_offset
from .rigid import camera_rigid_offset


TORSO_MOTIONS = ("learned", "rigid")  # DeformationConfig.torso_motion
TORSO_ATTENTION_FRAMES = ("head", "head+body")  # DeformationConfig.torso_attention_frame


@dataclass(frozen=True)
class DeformationConfig:
    kind: str = "region"  # "region" or "global"
    posenc_frequencies: int = 6
    # > posenc_frequencies: the eye region's finer bands. sin/cos of x at frequencies
    # posenc_frequencies .. eye_posenc_frequencies - 1, multiplied by the eye attention, enter the
    # face stage beside the shared encoding, meant to let a lid move across the eye (~1 cm) without
    # giving the rest of the face that freedom. Measured (docs/RESULTS.md, "Finer position
    # encoding"): blinks deepen as with finer bands everywhere, but on a 16 s clip unseen views
    # still suffered on one seed of two; off
    eye_posenc_frequencies: int = 0
    hidden: int = 64
    lip_dim: int = 16
    eye_dim: int = 2
    pose_dim: int = 6  # rotation vector and translation of the head -> camera pose
    signal_dim: int = 32  # each signal is projected to this width before it enters the MLP
    identity_dim: int = 0  # > 0: per-identity dynamic feature and generated layer (multi-identity prior)
    position_encoding: str = "frequency"  # "frequency" or "grid" (see the module docstring)
    separate_eyes: bool = False  # region model: the eye ratio drives its own branch, not the lip trunk
    activation: str = "relu"  # "relu" or "silu" (never zero-gradient: see ACTIVATIONS)
    # the lip feature is multiplied by this before it enters the nets: a prepared lip feature
    # spreads ~0.001-0.01 per component (metres in its PCA basis), so at scale 1 a net needs
    # weights of ~100 before the lips can move anything (train.config.TrainConfig.lip_input)
    lip_scale: float = 1.0
    # the eye ratio enters as (eye - eye_mean) * eye_scale (TrainConfig.eye_input)
    eye_mean: float = 0.0
    eye_scale: float = 1.0
    # every displacement the nets output is multiplied by this (metres per unit of net output).
    # Adam moves each weight by about the learning rate a step, so at 1.0 a 64-wide output layer
    # can shift points by decimetres in one step: in `fast` runs the face stage then threw every
    # sample out of the field's box within 50-80 steps, where density and gradient are zero, and
    # the run never recovered (docs/RESULTS.md, "The deformation nets blew up"). 1.0: models before it
    offset_scale: float = 1.0
    # the torso stage (region model): "learned", the net alone moves neck and torso (models before
    # it); "rigid", the stage blends each point toward where a body that keeps still in front of the
    # camera sits under the reference pose (model.rigid.camera_rigid_offset), by its torso
    # attention, and the net adds a residual: a two-bone skinning of head and body whose weight
    # is the attention, so the net no longer has to learn how a turn of the head moves the body
    torso_motion: str = "learned"
    # "rigid": the training frames' mean pose (rotation vector, translation). A multi-identity net
    # (identity_dim > 0) leaves it empty: each identity brings its own (DeformationIdentity)
    reference_pose: tuple[float, ...] = ()
    # where the torso attention reads a point: "head", its position in the head frame (models
    # before it); "head+body" ("rigid" only), also where the point sits in the body's frame (the
    # rigid map's output). On a turn beyond the training views a shoulder point lands at a head-frame
    # position never seen as body, but at its usual body-frame position
    torso_attention_frame: str = "head"
    grid_levels: int = 4  # "grid": tri-plane levels, from grid_base_resolution to grid_max_resolution
    grid_base_resolution: int = 16
    grid_max_resolution: int = 64

    def grid_config(self):
        from .encoding import TriPlaneConfig

        return TriPlaneConfig(levels=self.grid_levels, features_per_level=2, base_resolution=self.grid_base_resolution,
                              max_resolution=self.grid_max_resolution)


class DeformationIdentity(NamedTuple):
    """One identity's inputs to the deformation net (lokitalk.model.identity)."""

    code: torch.Tensor  # [1, identity_dim] dynamic feature
    weight: torch.Tensor  # [hidden, hidden] the hypernetwork-generated layer
    bias: torch.Tensor  # [hidden]
    # [6] the identity's own reference pose (mean of its training frames' poses), which a rigid
    # torso stage maps its body to: people sit differently in front of their cameras
    reference_pose: torch.Tensor | None = None
    # (anchors [K,3], offsets [K,3]): the identity's face alignment (model.face_alignment), which
    # moves its head-frame points onto the prior's shared face before the nets read them
    alignment: tuple[torch.Tensor, torch.Tensor] | None = None


def aligned_points(x: torch.Tensor, identity: DeformationIdentity | None) -> torch.Tensor:
    """x moved by the identity's face alignment (unchanged without one)."""
    if identity is None or identity.alignment is None:
        return x
    return x + alignment_offset(x, *identity.alignment).to(x.dtype)


# The deformation nets' nonlinearity. With ReLU a unit that is negative over the mouth passes
# neither the lip signal nor a gradient there, and cannot recover: some tiny runs ended with
# every lip-carrying unit dead at the mouth, lips frozen whatever the signal (docs/RESULTS.md).
# SiLU keeps a gradient for negative inputs.
ACTIVATIONS = {"relu": F.relu, "silu": F.silu}


def activation_of(config: DeformationConfig):
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {config.activation!r}")
    return ACTIVATIONS[config.activation]


def _identity_layer(hidden: torch.Tensor, identity: DeformationIdentity, act=F.relu) -> torch.Tensor:
    return hidden + F.linear(act(hidden), identity.weight.to(hidden.dtype), identity.bias.to(hidden.dtype))


def _check_identity(config: DeformationConfig, identity: DeformationIdentity | None) -> None:
    if (identity is None) != (config.identity_dim == 0):
        raise ValueError("a multi-identity deformation net needs its identity's parts, a single-person one none")


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[M,3] -> [M, 3 + 6 * frequencies]: x, sin(2^k pi x), cos(2^k pi x)."""
    return torch.cat([x, frequency_bands(x, 0, frequencies)], dim=-1)


def frequency_bands(x: torch.Tensor, first: int, stop: int) -> torch.Tensor:
    """[M,3] -> [M, 6 * (stop - first)]: sin(2^k pi x), then cos(2^k pi x), for k in first..stop-1."""
    scales = (2.0 ** torch.arange(first, stop, device=x.device, dtype=x.dtype)) * torch.pi
    angles = x[..., None] * scales  # [M,3,F]
    return torch.cat([torch.sin(angles).flatten(1), torch.cos(angles).flatten(1)], dim=-1)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, zero_last: bool = False,
        activation: str = "relu") -> nn.Sequential:
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        mods += [nn.Linear(dim, hidden), nn.SiLU() if activation == "silu" else nn.ReLU(inplace=True)]
        dim = hidden
    last = nn.Linear(dim, out_dim)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)


class PositionEncoder(nn.Module):
    """Sample positions (metres, head frame) -> the deformation nets' position input."""

    def __init__(self, config: DeformationConfig, box_min, box_max):
        super().__init__()
        self.config = config
        if config.position_encoding == "frequency":
            self.output_dim = 3 + 6 * config.posenc_frequencies
        elif config.position_encoding == "grid":
            from .encoding import TriPlaneEncoding

            self.grid = TriPlaneEncoding(config.grid_config())
            self.output_dim = 3 + self.grid.output_dim
            # not in the state dict: the box is the field's, saved with its config
            self.register_buffer("box_min", torch.tensor(box_min, dtype=torch.float32), persistent=False)
            self.register_buffer("box_max", torch.tensor(box_max, dtype=torch.float32), persistent=False)
        else:
            raise ValueError(f"position_encoding must be 'frequency' or 'grid', not {config.position_encoding!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.position_encoding == "frequency":
            return positional_encoding(x, self.config.posenc_frequencies)
        unit = (x - self.box_min) / (self.box_max - self.box_min) * 2.0 - 1.0
        return torch.cat([unit, self.grid(unit)], -1)


@dataclass
class DeformationOutput:
    canonical: torch.Tensor  # [M,3] points in the canonical space
    attention: dict[str, torch.Tensor]  # name -> [M] per-point attention (region model only)
    offset: torch.Tensor  # [M,3] total displacement
    face_offset: torch.Tensor | None = None  # [M,3] stage 1's part of it (region model only)


class RegionDeformation(nn.Module):
    def __init__(self, config: DeformationConfig, box_min=None, box_max=None):
        super().__init__()
        self.config = config
        self.position = PositionEncoder(config, box_min, box_max)
        pe = self.position.output_dim
        self.eye_bands = 0
        if config.position_encoding == "frequency":
            self.eye_bands = max(0, config.eye_posenc_frequencies - config.posenc_frequencies)
        s = config.signal_dim
        self.lip_proj = nn.Linear(config.lip_dim, s)
        self.eye_proj = nn.Linear(config.eye_dim, s)
        self.pose_proj = nn.Linear(config.pose_dim, s)
        self.act = activation_of(config)
        act = config.activation
        self.face_attention = mlp(pe, config.hidden, 2, layers=1, activation=act)  # -> (lip, eye) logits
        ident = s if config.identity_dim else 0
        if config.identity_dim:
            self.identity_proj = nn.Linear(config.identity_dim, s)
        eye_in_trunk = 0 if config.separate_eyes else s
        self.face_trunk = mlp(pe + s + eye_in_trunk + ident + 6 * self.eye_bands, config.hidden, config.hidden,
                              layers=1, activation=act)
        self.face_out = nn.Linear(config.hidden, 3)
        if config.separate_eyes:
            self.eye_net = mlp(pe + s, config.hidden, 3, layers=1, zero_last=True, activation=act)
        if config.torso_motion not in TORSO_MOTIONS:
            raise ValueError(f"torso_motion must be 'learned' or 'rigid', not {config.torso_motion!r}")
        if config.torso_attention_frame not in TORSO_ATTENTION_FRAMES:
            raise ValueError(f"torso_attention_frame must be one of {TORSO_ATTENTION_FRAMES}, "
                             f"not {config.torso_attention_frame!r}")
        self.attention_reads_body = config.torso_attention_frame == "head+body"
        if self.attention_reads_body and config.torso_motion != "rigid":
            raise ValueError("torso_attention_frame 'head+body' needs torso_motion 'rigid' (the body frame is its map)")
        self.torso_attention = mlp(pe * (2 if self.attention_reads_body else 1), config.hidden, 1, layers=1,
                                   activation=act)
        if config.torso_motion == "rigid" and not config.identity_dim:
            if len(config.reference_pose) != 6:
                raise ValueError("torso_motion 'rigid' needs a reference_pose of 6 numbers (rotation vector, translation)")
            # not in the state dict: the pose is in the config, saved with the model's config
            self.register_buffer("reference_pose", torch.tensor(config.reference_pose, dtype=torch.float32),
                                 persistent=False)
        else:  # none, or (multi-identity) each identity brings its own to forward
            if config.torso_motion == "rigid" and config.reference_pose:
                raise ValueError("a multi-identity rigid torso stage takes each identity's reference pose, "
                                 "not one in its config")
            self.reference_pose = None
        if config.torso_motion == "rigid":
            # start with the attention low everywhere (sigmoid(-2) = 0.12): the rigid path moves
            # whatever the attention covers, and the head must not start half-glued to the body
            nn.init.constant_(self.torso_attention[-1].bias, -2.0)
        self.torso_net = mlp(pe + s + config.hidden, config.hidden, 3, layers=2, zero_last=True, activation=act)
        nn.init.zeros_(self.face_out.weight)
        nn.init.zeros_(self.face_out.bias)

    def forward(self, x: torch.Tensor, lip: torch.Tensor, eye: torch.Tensor, pose: torch.Tensor,
                identity: DeformationIdentity | None = None, body: torch.Tensor | None = None) -> DeformationOutput:
        """x [M,3]; lip [M or 1, lip_dim], eye [M or 1, eye_dim], pose [M or 1, pose_dim]: one row
        per point, or a single row for a batch from one frame (projected once, then broadcast).
        `identity`: the identity's parts, for a multi-identity net only. `body` [1, 6]: the frame's
        body correction (model.rigid; training with body refinement), for a rigid torso stage only."""
        _check_identity(self.config, identity)
        if body is not None and self.config.torso_motion != "rigid":
            raise ValueError("a body correction needs a rigid torso stage (torso_motion 'rigid')")
        observed = x
        x = aligned_points(x, identity)
        enc = self.position(x)
        att = torch.sigmoid(self.face_attention(enc))
        a_lip, a_eye = att[:, 0], att[:, 1]
        lip_in = a_lip[:, None] * self.lip_proj(lip)  # [M,s] (broadcast from [1,s] when shared)
        eye_in = a_eye[:, None] * self.eye_proj(eye)
        parts = [enc, lip_in] if self.config.separate_eyes else [enc, lip_in, eye_in]
        if self.eye_bands:
            first = self.config.posenc_frequencies
            parts.append(a_eye[:, None] * frequency_bands(x, first, first + self.eye_bands))
        if identity is not None:
            parts.append(self.identity_proj(identity.code.to(x.dtype)).expand(x.shape[0], -1))
        hidden = self.face_trunk(torch.cat(parts, -1))
        if identity is not None:
            hidden = _identity_layer(hidden, identity, self.act)
        dx_face = self.face_out(self.act(hidden))
        if self.config.separate_eyes:
            dx_face = dx_face + a_eye[:, None] * self.eye_net(torch.cat([enc, eye_in], -1))
        dx_face = dx_face * self.config.offset_scale
        x1 = x + dx_face
        enc1 = self.position(x1)
        rigid = None
        if self.config.torso_motion == "rigid":
            reference = self.reference_pose if identity is None else identity.reference_pose
            if reference is None:
                raise ValueError("a multi-identity rigid torso stage needs the identity's reference pose")
            rigid = camera_rigid_offset(x1, pose, reference, body)
        attention_in = enc1
        if self.attention_reads_body:
            attention_in = torch.cat([enc1, self.position((x1 + rigid).to(x1.dtype))], -1)
        a_torso = torch.sigmoid(self.torso_attention(attention_in))[:, 0]
        pose_in = self.pose_proj(pose).expand(x.shape[0], -1)
        dx_torso = self.torso_net(torch.cat([enc1, pose_in, hidden], -1)) * self.config.offset_scale
        if rigid is not None:
            dx_torso = dx_torso + rigid
        dx_torso = a_torso[:, None] * dx_torso
        canonical = x1 + dx_torso
        return DeformationOutput(canonical, {"lip": a_lip, "eye": a_eye, "torso": a_torso}, canonical - observed,
                                 dx_face)


class GlobalDeformation(nn.Module):
    def __init__(self, config: DeformationConfig, box_min=None, box_max=None):
        super().__init__()
        self.config = config
        self.position = PositionEncoder(config, box_min, box_max)
        pe = self.position.output_dim
        s = config.signal_dim
        if config.torso_motion != "learned":  # the baseline has no torso stage to make rigid
            raise ValueError("global deformation has no torso stage: torso_motion must be 'learned'")
        self.signal_proj = nn.Linear(config.lip_dim + config.eye_dim + config.pose_dim + config.identity_dim, 3 * s)
        self.act = activation_of(config)
        self.net = mlp(pe + 3 * s, config.hidden, 3, layers=3, zero_last=True, activation=config.activation)

    def forward(self, x: torch.Tensor, lip: torch.Tensor, eye: torch.Tensor, pose: torch.Tensor,
                identity: DeformationIdentity | None = None, body: torch.Tensor | None = None) -> DeformationOutput:
        _check_identity(self.config, identity)
        if body is not None:
            raise ValueError("global deformation has no torso stage to take a body correction")
        observed = x
        x = aligned_points(x, identity)
        enc = self.position(x)
        inputs = [lip, eye, pose] if identity is None else [lip, eye, pose, identity.code.to(lip.dtype)]
        signals = self.signal_proj(torch.cat(inputs, -1)).expand(x.shape[0], -1)
        if identity is None:
            dx = self.net(torch.cat([enc, signals], -1))
        else:  # the generated layer after the first hidden layer
            dx = self.net[2:](_identity_layer(self.net[:2](torch.cat([enc, signals], -1)), identity, self.act))
        dx = dx * self.config.offset_scale
        return DeformationOutput(x + dx, {}, x + dx - observed)


def build_deformation(config: DeformationConfig, box_min=(-1.0, -1.0, -1.0), box_max=(1.0, 1.0, 1.0)) -> nn.Module:
    """`box_min`/`box_max`: the field's box (metres), where a "grid" position encoding lives."""
    if config.kind == "region":
        return RegionDeformation(config, box_min, box_max)
    if config.kind == "global":
        return GlobalDeformation(config, box_min, box_max)
    raise ValueError(f"deformation must be 'region' or 'global', not {config.kind!r}")
