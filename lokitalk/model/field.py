"""The canonical field and the talking-head model that puts deformation and field together.

Canonical field (shared space of all frames): a point in the head frame's bounding box ->
tri-plane features h -> density head (sigma and a geometry feature) -> colour head (geometry
feature and view direction) -> rgb. Densities are exp of the raw output (clamped), so that
empty space and opaque skin are both easy to reach.

Multi-identity priors (lokitalk.model.identity, `ModelConfig.identity` set): the grid, heads and
deformation are shared by all identities; each identity adds a residual canonical-offset grid to
the tri-plane features, a geometry feature to the density head's input, an appearance feature to
the colour head's input, and a dynamic feature plus one generated layer to the deformation net.
Without `identity` (the default) the model is exactly the single-person one.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from .deformation import DeformationConfig, DeformationIdentity, build_deformation, mlp, positional_encoding
from .encoding import TriPlaneConfig, TriPlaneEncoding

if TYPE_CHECKING:
    from .identity import IdentityConfig, ResolvedIdentity

# Head-frame box (metres) that holds head, hair, neck and shoulders (docs/CONVENTIONS.md):
# x right, y down, z away from the camera, origin near the head's centre.
DEFAULT_BOX_MIN = (-0.32, -0.26, -0.22)
DEFAULT_BOX_MAX = (0.32, 0.42, 0.26)


@dataclass(frozen=True)
class FieldConfig:
    grid: TriPlaneConfig = dc_field(default_factory=TriPlaneConfig)
    box_min: tuple[float, float, float] = DEFAULT_BOX_MIN
    box_max: tuple[float, float, float] = DEFAULT_BOX_MAX
    hidden: int = 64
    geometry_features: int = 15
    direction_frequencies: int = 2
    max_log_density: float = 12.0
    geometry_code_dim: int = 0  # > 0: a per-identity geometry feature enters the density head
    appearance_code_dim: int = 0  # > 0: a per-identity appearance feature enters the colour head


class CanonicalField(nn.Module):
    def __init__(self, config: FieldConfig = FieldConfig()):
        super().__init__()
        self.config = config
        self.encoding = TriPlaneEncoding(config.grid)
        self.register_buffer("box_min", torch.tensor(config.box_min, dtype=torch.float32))
        self.register_buffer("box_max", torch.tensor(config.box_max, dtype=torch.float32))
        self.density_net = mlp(self.encoding.output_dim + config.geometry_code_dim, config.hidden,
                               1 + config.geometry_features, layers=1)
        with torch.no_grad():  # start nearly empty (density ~0.37/m), so that space can be pruned early
            self.density_net[-1].bias[0] = -1.0
        dir_dim = 3 + 6 * config.direction_frequencies
        self.color_net = mlp(config.geometry_features + dir_dim + config.appearance_code_dim, config.hidden, 3,
                             layers=2)

    def normalise(self, points: torch.Tensor) -> torch.Tensor:
        return (points - self.box_min) / (self.box_max - self.box_min) * 2.0 - 1.0

    def _raw(self, points: torch.Tensor, feature_offset: torch.Tensor | None = None,
             geometry_code: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoding(self.normalise(points))
        if feature_offset is not None:  # an identity's canonical-offset grid, [M, output_dim]
            features = features + feature_offset.to(features.dtype)
        if geometry_code is not None:  # [1, geometry_code_dim]
            features = torch.cat([features, geometry_code.to(features.dtype).expand(points.shape[0], -1)], -1)
        out = self.density_net(features)
        density = torch.exp(out[:, 0].clamp(max=self.config.max_log_density))
        inside = ((points >= self.box_min) & (points <= self.box_max)).all(-1)
        return density * inside, out[:, 1:]

    def density(self, points: torch.Tensor, feature_offset: torch.Tensor | None = None,
                geometry_code: torch.Tensor | None = None) -> torch.Tensor:
        return self._raw(points, feature_offset, geometry_code)[0]

    def forward(self, points: torch.Tensor, directions: torch.Tensor, feature_offset: torch.Tensor | None = None,
                geometry_code: torch.Tensor | None = None, appearance_code: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        density, geometry = self._raw(points, feature_offset, geometry_code)
        d = positional_encoding(directions, self.config.direction_frequencies)
        parts = [geometry, d.to(geometry.dtype)]
        if appearance_code is not None:
            parts.append(appearance_code.to(geometry.dtype).expand(points.shape[0], -1))
        rgb = torch.sigmoid(self.color_net(torch.cat(parts, -1)))
        return density, rgb


@dataclass(frozen=True)
class ModelConfig:
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    deformation: DeformationConfig = dc_field(default_factory=DeformationConfig)
    identity: "IdentityConfig | None" = None  # set: a multi-identity (prior) model
    # the model holds an affine pose correction (model.pose_calibration) that rendering applies to
    # every pose: set by training with pose refinement, fitted at each of its checkpoints
    pose_calibration: bool = False


def pose_vector(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """[3,3], [3] -> [6]: rotation vector (axis * angle) and translation, the torso's pose input."""
    cos = ((rotation.trace() - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    angle = torch.acos(cos)
    axis = torch.stack([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0],
                        rotation[1, 0] - rotation[0, 1]]) / (2 * torch.sin(angle) + 1e-8)
    return torch.cat([axis * angle, translation])


class PointIdentity(NamedTuple):
    """An identity's tensors as the point evaluator takes them (plain tensors, so that a compiled
    evaluator sees the same kind of input every call)."""

    deformation: DeformationIdentity
    offset: list[torch.Tensor]  # the canonical-offset grid's planes
    geometry: torch.Tensor  # [1, code_dim]
    appearance: torch.Tensor  # [1, code_dim]


class TalkingHead(nn.Module):
    """Deformation + canonical field. `field_for(batch)` gives the renderer's field function
    for one frame's conditioning; it also returns per-sample attentions for region losses."""

    def __init__(self, config: ModelConfig = ModelConfig(), with_identity: bool = True):
        """With `config.identity` set, the model also holds the shared hypernetwork and (unless
        `with_identity` is False, as in multi-identity pretraining) one identity's parts."""
        super().__init__()
        self.config = config
        self.deformation = build_deformation(config.deformation, config.field.box_min, config.field.box_max)
        self.canonical = CanonicalField(config.field)
        # what evaluates sample points (deformation and canonical field): `evaluate_points` itself,
        # or a compiled wrapper of it (lokitalk.train.accelerate); a plain attribute, so it adds
        # nothing to the state dict
        self.point_runner = None
        self.density_runner = None  # likewise for `evaluate_density`
        # training with a displacement loss sets this once (train.trainer): `evaluate_points` then
        # also returns each sample's squared face-stage displacement; a plain attribute as well
        self.track_displacement = False
        if config.pose_calibration:
            from .pose_calibration import FEATURES

            self.register_buffer("pose_calibration", torch.zeros(FEATURES, 6, dtype=torch.float64))
        if config.identity is not None:
            from .identity import Hypernetwork, IdentityParts

            self.hyper = Hypernetwork(config)
            if with_identity:
                self.identity = IdentityParts(config)

    def grid_parameters(self) -> list[nn.Parameter]:
        """The feature grids' values (trained at the grid learning rate, the rest at the nets')."""
        params = list(self.canonical.encoding.parameters())
        position_grid = getattr(self.deformation.position, "grid", None)
        return params + ([] if position_grid is None else list(position_grid.parameters()))

    def _identity(self, identity: "ResolvedIdentity | None") -> "ResolvedIdentity | None":
        if self.config.identity is None:
            return None
        if identity is not None:
            return identity
        if getattr(self, "identity", None) is None:
            raise ValueError("this multi-identity model holds no identity: pass one")
        return self.identity.resolve()

    def canonical_density(self, points: torch.Tensor, identity: "ResolvedIdentity | None" = None) -> torch.Tensor:
        """Canonical density (occupancy-grid updates), with the identity's offset and geometry."""
        ident = self._identity(identity)
        if ident is None:
            return self.canonical.density(points)
        offset = ident.feature_offset(self.canonical.normalise(points), self.canonical.encoding.config)
        return self.canonical.density(points, offset, ident.geometry[None])

    def evaluate_points(self, points: torch.Tensor, directions: torch.Tensor, lip: torch.Tensor, eye: torch.Tensor,
                        pose: torch.Tensor, identity: PointIdentity | None = None, body: torch.Tensor | None = None):
        """Sample points of one frame [M,3] and their view directions [M,3], the frame's signals as
        single rows -> (density [M], rgb [M,3], attentions). The whole per-sample path in one
        function, so that it compiles into one graph. `body` [1,6]: the frame's body correction
        (training with body refinement only)."""
        if identity is None:
            deformed = self.deformation(points, lip, eye, pose, body=body)
            density, rgb = self.canonical(deformed.canonical, directions)
        else:
            from .identity import offset_features

            deformed = self.deformation(points, lip, eye, pose, identity.deformation, body=body)
            offset = offset_features(identity.offset, self.canonical.normalise(deformed.canonical),
                                     self.canonical.encoding.config)
            density, rgb = self.canonical(deformed.canonical, directions, offset, identity.geometry,
                                          identity.appearance)
        if not (self.track_displacement and self.training) or deformed.face_offset is None:
            return density, rgb, deformed.attention
        # training also composites each sample's squared face-stage displacement (m²), for the
        # loss that keeps the face stage local (train.losses.displacement_loss); the torso stage
        # must move the body by many centimetres when the head turns, and is not penalised
        squared = (deformed.face_offset.float() ** 2).sum(-1)
        free = (1 - deformed.attention["lip"].float()) * (1 - deformed.attention["eye"].float())
        return density, rgb, {**deformed.attention, "displacement": squared, "displacement_unattended": squared * free}

    def evaluate_density(self, points: torch.Tensor, lip: torch.Tensor, eye: torch.Tensor, pose: torch.Tensor,
                         identity: PointIdentity | None = None, body: torch.Tensor | None = None) -> torch.Tensor:
        """Density only [M] at one frame's sample points (as `evaluate_points`, without the colour
        head): the renderer's look-ahead pass that decides which samples are worth a gradient."""
        if identity is None:
            return self.canonical.density(self.deformation(points, lip, eye, pose, body=body).canonical)
        from .identity import offset_features

        canonical = self.deformation(points, lip, eye, pose, identity.deformation, body=body).canonical
        offset = offset_features(identity.offset, self.canonical.normalise(canonical), self.canonical.encoding.config)
        return self.canonical.density(canonical, offset, identity.geometry)

    def calibrated(self, conditioning: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A frame's conditioning with the model's pose correction applied (unchanged without one)."""
        if not self.config.pose_calibration:
            return conditioning
        from .pose_calibration import calibrate

        return calibrate(conditioning, self.pose_calibration)

    def frame_signals(self, batch: dict[str, torch.Tensor], device: torch.device,
                      identity: "ResolvedIdentity | None" = None):
        """One frame's signals as the nets read them -> (lip [L], eye [E], pose [6], PointIdentity
        or None): input scales fixed at training (lokitalk.train.trainer.build_model), the lip
        feature mapped into a prior's shared lip space for multi-identity models."""
        deform = self.config.deformation
        lip = batch["lip_feature"].to(device) * deform.lip_scale
        eye = (batch["eye_ratio"].to(device) - deform.eye_mean) * deform.eye_scale
        pose = pose_vector(batch["rotation"].to(device), batch["translation"].to(device))
        ident = self._identity(identity)
        point_identity = None
        if ident is not None:
            lip = ident.map_lip(lip)  # the avatar's own lip basis -> the prior's shared lip space
            point_identity = PointIdentity(self.hyper.layer(ident.dynamic, ident.reference_pose, ident.alignment),
                                           list(ident.offset),
                                           ident.geometry[None], ident.appearance[None])
        return lip, eye, pose, point_identity

    def field_for(self, batch: dict[str, torch.Tensor], directions: torch.Tensor,
                  identity: "ResolvedIdentity | None" = None):
        """`identity` (multi-identity models): whose parts to use; default the model's own."""
        lip, eye, pose, point_identity = self.frame_signals(batch, directions.device, identity)
        runner = self.point_runner or self.evaluate_points
        # training with body refinement: the frame's body correction (lokitalk.train.body_refine)
        body = batch["body_correction"].to(directions.device)[None] if "body_correction" in batch else None

        def field_fn(points: torch.Tensor, ray_index: torch.Tensor):
            # one frame per batch: its signals are passed once and broadcast inside
            if body is None:  # the call every rendered frame makes: one compiled graph
                return runner(points, directions[ray_index], lip[None], eye[None], pose[None], point_identity)
            return runner(points, directions[ray_index], lip[None], eye[None], pose[None], point_identity, body)

        density_runner = self.density_runner or self.evaluate_density

        def density_fn(points: torch.Tensor, ray_index: torch.Tensor) -> torch.Tensor:
            return density_runner(points, lip[None], eye[None], pose[None], point_identity, body)

        field_fn.density = density_fn  # the renderer's look-ahead (RenderConfig.prune)
        return field_fn
