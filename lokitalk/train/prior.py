"""A multi-identity prior: what `lokitalk pretrain` writes and `lokitalk train --prior` reads.

PRIOR/
  prior.json          format, the model config (with its identity config), the shared lip space,
                      the identities it was trained on, the pretraining settings
  prior.safetensors   shared weights: `head.*` (deformation nets, canonical grid, density and colour
                      heads, hypernetwork), `encoder.*` (the ID encoder), `lip.*` (the shared lip
                      basis and its per-component scale), `align.target` (with face alignment:
                      the mean face's anchor points every person is moved onto)
  identities/NAME.safetensors   each pretraining identity's learned parts (residuals on the
                      encoder's output), for inspection and re-use

The shared lip space: each avatar's lip feature lives in its own PCA basis, relative to its own
rest mouth (`lip_basis.npz`). Its mouth points are recovered from it exactly up to the basis
(points = feature @ components + neutral), expressed as size-normalised offsets from the rest
mouth and projected on one basis pooled over all identities
(lokitalk.audio2motion.shared_basis), then divided by each component's spread (unit variance
over identities). All of that is affine in the avatar's own feature: one fixed matrix and bias
per avatar (`lip_map`), kept in the identity's parts, so models read `lip_feature` as usual.

Fine-tuning schedule for a new person (`finetune_schedule`): the fewer seconds of video, the
longer only the person's own parts learn (shared nets and grid frozen) and the slower the shared
weights move afterwards, so a few seconds cannot overwrite what many people taught the prior.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..model.field import ModelConfig, TalkingHead
from ..model.identity import IdentityConfig, IdentityEncoder, encoder_inputs
from .checkpoint import model_config_from_dict, model_config_to_dict

PRIOR_FORMAT = "lokitalk-prior/1"


# --- the shared lip space -------------------------------------------------------------------

@dataclass(frozen=True)
class LipSpace:
    components: np.ndarray  # [K, 120] shared basis rows (size-normalised offsets from the rest mouth)
    scale: np.ndarray  # [K] spread of each component (features are divided by it)


def identity_of(avatar) -> str:
    """Identity = the avatar folder's name up to the first '_' (id03_a, id03_b -> id03)."""
    from ..audio2motion.shared_basis import identity_name

    return identity_name(avatar)


def _mouths(avatar) -> np.ndarray:
    """[N,40,3] mouth points rebuilt from the avatar's own lip feature and basis (head frame)."""
    basis = avatar.lip_basis
    flat = avatar.lip_feature.astype(np.float64) @ basis.components + basis.neutral
    return flat.reshape(len(flat), -1, 3)


def _usable(avatar, frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, int)
    good = frames[avatar.valid[frames]]
    return good if len(good) else frames


LIP_SCALINGS = ("component", "overall")


def fit_lip_space(avatars: list, frames: list[np.ndarray], components: int = 16,
                  scaling: str = "component") -> LipSpace:
    """Shared lip basis over the given training frames of `avatars`, balanced per identity.

    `scaling`: "component" divides each component by its own spread (every direction at unit
    spread, the minor ones blown up as far as 20x); "overall" divides them all by one factor,
    the root of their summed mean square about the rest mouth, so the space has unit overall
    spread and its directions keep their real proportions (as `TrainConfig.lip_input="unit"`
    does for one person)."""
    from ..audio2motion.shared_basis import fit_shared_basis_arrays

    if scaling not in LIP_SCALINGS:
        raise InputError(f"lip scaling must be one of {', '.join(LIP_SCALINGS)}, not {scaling!r}")
    basis = fit_shared_basis_arrays([_mouths(a) for a in avatars], [identity_of(a) for a in avatars], components,
                                    [_usable(a, f) for a, f in zip(avatars, frames)])
    variance = np.maximum(basis.explained_variance, 0)
    if scaling == "overall":
        spread = np.full(len(variance), np.sqrt(variance.sum()) + 1e-12)
    else:
        spread = np.sqrt(variance)
        spread = np.maximum(spread, 0.05 * spread.max() + 1e-12)  # near-empty directions are not blown up
    return LipSpace(basis.components.astype(np.float64), spread.astype(np.float64))


def lip_map(avatar, frames: np.ndarray, space: LipSpace) -> tuple[np.ndarray, np.ndarray]:
    """(matrix [K_own, K], bias [K]): the avatar's own lip feature -> the shared, scaled space
    (rest mouth and size from `frames`, its training frames)."""
    from ..audio2motion.shared_basis import identity_mouth

    mouth = identity_mouth(_mouths(avatar), _usable(avatar, frames))
    basis = avatar.lip_basis
    project = space.components.T / space.scale  # [120, K]
    matrix = mouth.scale * basis.components @ project
    bias = mouth.scale * (basis.neutral - mouth.rest.reshape(-1)) @ project
    return matrix.astype(np.float32), bias.astype(np.float32)


# --- the prior -------------------------------------------------------------------------------

@dataclass
class Prior:
    model_config: ModelConfig  # with `identity` set
    lip_space: LipSpace
    head: dict[str, torch.Tensor]  # shared TalkingHead weights (no identity parts)
    encoder: dict[str, torch.Tensor]
    identities: dict[str, dict[str, torch.Tensor]]  # name -> learned parts (IdentityParts state)
    meta: dict
    # [K,3] the anchor points of the pretraining people's mean face (head frame, metres), where
    # face alignment puts every person's (IdentityConfig.face_alignment; None without it)
    alignment_target: np.ndarray | None = None

    def build_encoder(self) -> IdentityEncoder:
        encoder = IdentityEncoder(self.model_config)
        encoder.load_state_dict(self.encoder)
        return encoder


def prior_model_config(base: ModelConfig, identity: IdentityConfig, lip_dim: int,
                       torso_motion: str = "learned") -> ModelConfig:
    """The single-person preset's model made multi-identity: the identity features enter the
    deformation net and both heads, and the lip input is the shared space's width. `torso_motion`
    replaces the preset's: "rigid" holds each identity's body at its own reference pose (in its
    parts, not in the shared config)."""
    d = identity.code_dim
    return replace(base, identity=identity,
                   deformation=replace(base.deformation, lip_dim=lip_dim, identity_dim=d, torso_motion=torso_motion,
                                       reference_pose=()),
                   field=replace(base.field, geometry_code_dim=d, appearance_code_dim=d))


def save_prior(prior: Prior, out: Path) -> Path:
    """Write PRIOR/ (atomically: a folder beside it, renamed when complete)."""
    import shutil

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "identities").mkdir(parents=True)
    tensors = {f"head.{k}": v for k, v in prior.head.items()}
    tensors.update({f"encoder.{k}": v for k, v in prior.encoder.items()})
    tensors["lip.components"] = torch.from_numpy(np.ascontiguousarray(prior.lip_space.components))
    tensors["lip.scale"] = torch.from_numpy(np.ascontiguousarray(prior.lip_space.scale))
    if prior.alignment_target is not None:
        tensors["align.target"] = torch.from_numpy(np.ascontiguousarray(prior.alignment_target, dtype=np.float32))
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / "prior.safetensors"))
    for name, state in prior.identities.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
                  str(tmp / "identities" / f"{name}.safetensors"))
    (tmp / "prior.json").write_text(json.dumps({
        "format": PRIOR_FORMAT, "model": model_config_to_dict(prior.model_config),
        "identities": sorted(prior.identities), **prior.meta}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def _prior_meta(path: Path) -> dict:
    meta_path = path / "prior.json"
    if not meta_path.exists():
        raise InputError(f"{path} is not a LokiTalk prior (no prior.json): make one with `lokitalk pretrain`")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != PRIOR_FORMAT:
        raise InputError(f"{path}: prior format {meta.get('format')!r}, this LokiTalk reads {PRIOR_FORMAT}")
    return meta


def load_prior_config(path: Path) -> ModelConfig:
    """The prior's model config alone (no weights read)."""
    return model_config_from_dict(_prior_meta(Path(path))["model"])


def load_prior(path: Path) -> Prior:
    path = Path(path)
    meta = _prior_meta(path)
    tensors = load_file(str(path / "prior.safetensors"))
    head = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
    encoder = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    space = LipSpace(tensors["lip.components"].numpy(), tensors["lip.scale"].numpy())
    identities = {name: load_file(str(path / "identities" / f"{name}.safetensors")) for name in meta["identities"]}
    rest = {k: v for k, v in meta.items() if k not in ("format", "model", "identities")}
    target = tensors["align.target"].numpy().astype(np.float64) if "align.target" in tensors else None
    config = model_config_from_dict(meta["model"])
    if config.identity.face_alignment and target is None:
        raise InputError(f"{path}: the prior aligns faces but holds no mean face (align.target): pretrain it again")
    return Prior(config, space, head, encoder, identities, rest, target)


# --- fine-tuning a new person ----------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneSchedule:
    """What learns when, fine-tuning a prior on a new person."""

    identity_only_steps: int  # first steps: only the person's parts learn (shared weights frozen)
    shared_lr_scale: float  # then the shared nets learn at this fraction of their learning rate
    shared_grid_lr_scale: float  # ... and the shared canonical grid at this fraction

    def shared_factor(self, step: int, grid: bool) -> float:
        if step < self.identity_only_steps:
            return 0.0
        return self.shared_grid_lr_scale if grid else self.shared_lr_scale


# The person's parts alone settle in a fixed number of steps, not a share of the budget: with
# 3000 steps, 10 % (300 steps) left the prior behind scratch at step 300 on id04 and id10, and
# capping it at 30 steps reached scratch's final PSNR at step 600 instead of 1800 on id04, with the
# same final quality (docs/RESULTS.md, "How much the prior is worth"). 300-step runs are unchanged.
IDENTITY_ONLY_MAX_STEPS = {"few": 30, "more": 15}


def finetune_schedule(seconds: float, steps: int,
                      override: tuple[float, float, float] | None = None) -> FinetuneSchedule:
    """Few data, more caution: <= 15 s of video: the person's parts alone for 10 % of the steps
    (at most 30), then the shared nets at 0.5x and the grid at 1x; more: 5 % (at most 15), 1x, 1x.
    (A more cautious tier for <= 6 s, 20 %, 0.2x, 0.5x, was worse on every metric on 3 held-out
    identities x 3 seeds, and 5 %, 1x, 1x was unstable there: docs/RESULTS.md, "Fine-tuning
    schedule".) `override` (identity-only fraction of the steps, shared nets' and shared grid's
    learning-rate scales) replaces that choice, with no cap (`TrainConfig.finetune_schedule`)."""
    if override is not None:
        fraction, nets, grid = (float(v) for v in override)
        if not (0.0 <= fraction <= 1.0 and nets >= 0.0 and grid >= 0.0):
            raise InputError(f"a fine-tune schedule is (fraction in [0, 1], scale >= 0, scale >= 0), not {override}")
        return FinetuneSchedule(int(fraction * steps), nets, grid)
    if seconds <= 15.0:
        return FinetuneSchedule(min(int(0.1 * steps), IDENTITY_ONLY_MAX_STEPS["few"]), 0.5, 1.0)
    return FinetuneSchedule(min(int(0.05 * steps), IDENTITY_ONLY_MAX_STEPS["more"]), 1.0, 1.0)


def finetune_model(prior: Prior, avatar, frames: np.ndarray, device: torch.device,
                   pose_calibration: bool = False) -> TalkingHead:
    """A single-person model from the prior: shared weights copied, the person's parts from the
    ID encoder applied to `frames` (its training frames), its lip map from the same frames.
    `pose_calibration`: the model holds a pose correction (identity until a pose-refining
    fine-tune fits it: lokitalk.model.pose_calibration)."""
    config = replace(prior.model_config, pose_calibration=pose_calibration)
    own = avatar.lip_feature.shape[1]
    if own != config.identity.source_lip_dim:
        raise InputError(f"avatar {avatar.root} has {own} lip features, the prior expects "
                         f"{config.identity.source_lip_dim}")
    model = TalkingHead(config)
    missing, unexpected = model.load_state_dict(prior.head, strict=False)
    # the person's parts and the pose correction are the model's own, not the prior's
    if unexpected or any(not k.startswith("identity.") and k != "pose_calibration" for k in missing):
        raise InputError(f"prior weights do not fit its own model config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    encoder = prior.build_encoder()
    with torch.no_grad():
        codes = encoder(*encoder_inputs(avatar, frames, config.identity))
    model.identity.load_codes(codes)
    model.identity.set_lip_map(*lip_map(avatar, frames, prior.lip_space))
    model.identity.set_reference_pose(reference_pose_of(avatar, frames))
    if config.identity.face_alignment:
        model.identity.set_alignment(anchor_points_of(avatar, frames), prior.alignment_target)
    return model.to(device)


def anchor_points_of(avatar, frames: np.ndarray) -> np.ndarray:
    """[K,3] this person's face-alignment anchors: their mean landmarks over `frames` (their
    training frames) in the head frame (lokitalk.model.face_alignment)."""
    from ..face_model import load_face_template
    from ..model.face_alignment import mean_anchor_points

    return mean_anchor_points(avatar.landmarks, avatar.valid, frames, load_face_template())


def mean_face(avatars: list, frames: list[np.ndarray]) -> np.ndarray:
    """[K,3] the anchors of the people's mean face: each identity's anchors (its clips' frames
    pooled) averaged over identities, so that a person with several clips counts once."""
    people: dict[str, list[np.ndarray]] = {}
    for avatar, chosen in zip(avatars, frames):
        people.setdefault(identity_of(avatar), []).append(anchor_points_of(avatar, chosen))
    return np.mean([np.mean(points, 0) for points in people.values()], 0)


def reference_pose_of(avatar, frames: np.ndarray) -> tuple[float, ...]:
    """Where a rigid torso stage holds this person's body: the mean pose of `frames` (their
    training frames), as a single-person model's (lokitalk.train.trainer.build_model)."""
    from ..model.rigid import mean_pose

    frames = np.asarray(frames, int)
    return mean_pose(avatar.rotation[frames], avatar.translation[frames])


def prior_summary(prior: Prior) -> dict:
    return {"identities": sorted(prior.identities), "identity": asdict(prior.model_config.identity),
            **{k: v for k, v in prior.meta.items() if k in ("steps", "preset", "world_size")}}
