"""Multi-identity pretraining: `lokitalk pretrain AVATAR_DIR... --out PRIOR`.

Shared by every identity (`PriorNet`, wrapped in DistributedDataParallel when there are several
ranks): the deformation nets, the canonical grid, the density and colour heads, the hypernetwork
and the ID encoder. Per identity (`IdentityParts`, owned by one rank, round-robin by index, with
its own optimizer, ray sampler, random generator and occupancy grid): the parts, as residuals on
the ID encoder's output for that identity's reference frames. Lip features are mapped to one
shared lip space (lokitalk.train.prior).

A step: each rank renders one ray batch for each of `identities_per_step / world_size` of its
identities (cycling through them), the loss is the mean over them of the single-person losses
(photometric with mouth weight, opacity vs matte, region attention) plus small penalties on the
size of the identity's parts (`code_weight`: they stay in the range where densities and colours
still learn) and, ten times larger, on the residuals (so the encoder, not the residuals, carries
what identities have in common). DDP
averages the shared gradients over ranks; the identity gradients are scaled to match, so a run
on W ranks follows the same trajectory as one process doing all identities of a step (tested
with 2 gloo processes). Each rank refreshes the occupancy grids of its identities.

Checkpoints (OUT/checkpoint/): rank 0 writes the shared weights and optimizer
(lokitalk.train.checkpoint, pointer file last); every rank first writes its identities'
parts, grids, optimizers and random states under identities/NAME.STEP.*. `--resume` continues from
the pointer's step on any number of ranks (identity files are read by whichever rank owns them
now; several machines need OUT on a shared filesystem). At the end rank 0 gathers the parts and
writes the prior (lokitalk.train.prior.save_prior).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..data.avatar import load_avatar, training_frames
from ..data.rays import RaySampler
from ..errors import InputError
from ..model.field import TalkingHead
from ..model.identity import IdentityConfig, IdentityEncoder, IdentityParts, encoder_inputs
from ..model.renderer import OccupancyGrid, RenderConfig, render_rays
from ..render.frames import frame_render_config
from .accelerate import accelerate_model, resolve
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, training_rays, with_torso_motion
from .face_depth import FaceDepthPoints, face_depth_batch, face_depth_loss, face_depth_points_for
from .distributed import DistInfo, barrier, gather_to_main, init_distributed, mean_over_ranks, shutdown, wrap
from .losses import attention_loss, batch_speech, distortion_loss, opacity_loss, photometric_loss, psnr
from .progress import progress_bar
from .prior import (Prior, anchor_points_of, fit_lip_space, lip_map, mean_face, prior_model_config,
                    reference_pose_of, save_prior)


@dataclass(frozen=True)
class PretrainConfig:
    train: TrainConfig  # preset: model size, steps, rays, learning rates, losses
    identity: IdentityConfig = IdentityConfig()
    identities_per_step: int = 0  # 0: one per rank
    code_weight: float = 1e-3  # L2 on each identity's parts (encoder output + residual)
    residual_weight: float = 1e-2  # L2 on the identity residuals (the encoder carries the rest)
    lip_components: int = 16
    lip_scaling: str = "component"  # the shared lip space's scaling (prior.fit_lip_space)
    # the torso stage of the prior (the preset's is not used): "learned" (priors before it), or
    # "rigid", each identity's body held at its own reference pose (model.rigid)
    torso_motion: str = "learned"


# Each identity should be rendered a few hundred times: on 5 held-out identities, a prior from
# 1000 steps on 11 clips (~90 renders each) was clearly weaker than one from 4000 (~360 each)
# (docs/RESULTS.md, "How much the prior is worth"). The presets' step counts are per person.
RENDERS_PER_IDENTITY = 360


def default_pretrain_steps(preset_steps: int, identities: int, identities_per_step: int) -> int:
    """The preset's steps, or more: enough for every identity to be rendered RENDERS_PER_IDENTITY
    times when `identities_per_step` are rendered a step."""
    if identities < 1 or identities_per_step < 1:
        raise InputError(f"need at least one identity and one a step, not {identities} and {identities_per_step}")
    return max(preset_steps, math.ceil(RENDERS_PER_IDENTITY * identities / identities_per_step))


class PriorNet(nn.Module):
    """The shared weights, and a forward pass over a list of (identity, batch) items."""

    def __init__(self, config):
        super().__init__()
        self.head = TalkingHead(config, with_identity=False)
        self.encoder = IdentityEncoder(config)

    def forward(self, items: list, render_cfg: RenderConfig, train: TrainConfig, code_weight: float,
                residual_weight: float):
        losses, mses = [], []
        device = next(self.parameters()).device
        for item in items:
            codes = self.encoder(item.images, item.cameras)
            ident = item.parts.resolve(codes)
            batch = item.batch
            directions = batch["directions"].to(device)
            field_fn = self.head.field_for(batch, directions, ident)
            out = render_rays(field_fn, batch["origins"].to(device), directions, batch["background"].to(device),
                              frame_render_config(render_cfg, batch["translation"]), item.grid, item.generator,
                              (self.head.canonical.box_min, self.head.canonical.box_max) if render_cfg.box_sampling
                              else None)
            target, labels = batch["rgb"].to(device), batch["labels"].to(device)
            loss = photometric_loss(out.rgb, target, labels, train.mouth_weight, train.eye_weight)
            loss = loss + train.alpha_weight * opacity_loss(out.opacity, batch["alpha"].to(device))
            if train.distortion_weight > 0:
                loss = loss + train.distortion_weight * distortion_loss(out.weights, out.distances, out.deltas,
                                                                        render_cfg.far - render_cfg.near)
            if self.head.config.deformation.kind == "region" and train.attention_weight > 0:
                loss = loss + train.attention_weight * attention_loss(out.extras, labels, batch_speech(batch, device))
            residual = sum((p.float() ** 2).sum() for p in item.parts.parameters())
            size = sum((v.float() ** 2).sum() for v in (ident.dynamic, ident.appearance, ident.geometry, *ident.offset))
            if item.depth is not None:  # rays through the identity's face points (train.face_depth)
                depth_directions = item.depth["directions"].to(device)
                depth_out = render_rays(self.head.field_for(item.depth, depth_directions, ident),
                                        item.depth["origins"].to(device), depth_directions,
                                        item.depth["background"].to(device),
                                        frame_render_config(render_cfg, item.depth["translation"]), item.grid,
                                        item.generator, (self.head.canonical.box_min, self.head.canonical.box_max)
                                        if render_cfg.box_sampling else None)
                loss = loss + train.face_depth_weight * face_depth_loss(depth_out.depth.float(),
                                                                        depth_out.opacity.float(),
                                                                        item.depth["depth_target"])
            losses.append(loss + residual_weight * residual + code_weight * size)
            mses.append(((out.rgb.detach().float() - target) ** 2).mean())
        return torch.stack(losses).mean(), torch.stack(mses).mean()


@dataclass
class _Identity:
    """Everything one rank keeps for one identity it owns."""

    index: int
    name: str
    avatar: object
    parts: IdentityParts
    optimizer: torch.optim.Optimizer
    sampler: RaySampler
    generator: torch.Generator
    grid: OccupancyGrid
    images: torch.Tensor
    cameras: torch.Tensor
    face: FaceDepthPoints | None = None  # with TrainConfig.face_depth_weight > 0
    depth_rng: object = None  # numpy Generator drawing the face points

    def item(self, train: TrainConfig) -> "_Item":
        batch = self.sampler.sample()
        depth = None if self.face is None else face_depth_batch(batch, self.face, train.face_depth_rays,
                                                                train.face_depth_min_facing, self.depth_rng)
        return _Item(self.parts, batch, self.grid, self.generator, self.images, self.cameras, depth)


@dataclass
class _Item:
    parts: IdentityParts
    batch: dict
    grid: OccupancyGrid
    generator: torch.Generator
    images: torch.Tensor
    cameras: torch.Tensor
    depth: dict | None = None  # train.face_depth.face_depth_batch of the batch's frame


def _identity_names(avatars) -> list[str]:
    names = [a.root.name for a in avatars]
    if len(set(names)) != len(names):
        raise InputError("two avatar folders share a name; pretraining names identities by folder")
    return names


def pretrain(avatar_dirs: list[Path], out: Path, config: PretrainConfig, device: str = "auto",
             resume: bool = False, show_progress: bool = True, stop_after: int | None = None,
             time_limit_s: float | None = None) -> dict:
    """Pretrain (or resume) a prior on the avatars; returns a summary. Run under torchrun for
    several ranks. `stop_after` ends this call after that many steps (tests simulate a kill);
    `time_limit_s` ends the loop when that much wall time has passed and writes the prior
    at the step reached."""
    from ..provenance.consent import check_block

    info = init_distributed(device)
    try:
        return _pretrain(info, [Path(a) for a in avatar_dirs], Path(out), config, resume, show_progress,
                         stop_after, time_limit_s, check_block)
    finally:
        shutdown(info)


def _pretrain(info: DistInfo, avatar_dirs, out: Path, config: PretrainConfig, resume: bool, show_progress: bool,
              stop_after, time_limit_s, check_block) -> dict:
    train_cfg = config.train
    try:  # the single-person check of the same setting, before anything is written
        with_torso_motion(train_cfg, config.torso_motion)
    except ValueError as error:
        raise InputError(str(error)) from None
    dev = info.device
    if len(avatar_dirs) < info.world_size:
        raise InputError(f"{len(avatar_dirs)} identities for {info.world_size} ranks: each rank needs one")
    avatars = [load_avatar(a) for a in avatar_dirs]
    consents = [check_block(a.consent, "train", f"avatar {a.root}") for a in avatars]
    names = _identity_names(avatars)
    frames = [training_frames(a, train_cfg.train_seconds) for a in avatars]
    lip_dims = {a.lip_feature.shape[1] for a in avatars}
    if len(lip_dims) != 1:
        raise InputError(f"avatars have lip features of different widths {sorted(lip_dims)}: prepare them alike")
    ckpt_dir = out / "checkpoint"
    if info.is_main:
        if out.exists() and not resume and any(out.iterdir()):
            raise InputError(f"{out} exists: pass --resume to continue it, or choose another --out")
        (ckpt_dir / "identities").mkdir(parents=True, exist_ok=True)
    barrier(info)

    space = fit_lip_space(avatars, frames, config.lip_components, config.lip_scaling)
    identity_cfg = replace(config.identity, source_lip_dim=lip_dims.pop())
    model_cfg = prior_model_config(train_cfg.model, identity_cfg, len(space.scale), config.torso_motion)
    torch.manual_seed(train_cfg.seed)
    shared = PriorNet(model_cfg).to(dev)
    accel = resolve(dev, train_cfg.amp, train_cfg.compile)
    accelerate_model(shared.head, accel)
    grid_params = shared.head.grid_parameters()
    grid_ids = {id(p) for p in grid_params}
    optimizer = torch.optim.Adam([{"params": grid_params, "lr": train_cfg.lr_grid},
                                  {"params": [p for p in shared.parameters() if id(p) not in grid_ids],
                                   "lr": train_cfg.lr_network}], betas=(0.9, 0.99), eps=1e-15)
    decay = train_cfg.lr_final_fraction ** (1.0 / max(train_cfg.steps, 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: decay**s)
    ddp = wrap(shared, info)

    field_cfg = model_cfg.field
    # every rank holds every avatar: the same mean face everywhere
    target = mean_face(avatars, frames) if identity_cfg.face_alignment else None
    mine: list[_Identity] = []
    for index in info.owned(len(avatars)):
        avatar = avatars[index]
        parts = IdentityParts(model_cfg)
        parts.set_lip_map(*lip_map(avatar, frames[index], space))
        parts.set_reference_pose(reference_pose_of(avatar, frames[index]))
        if target is not None:
            parts.set_alignment(anchor_points_of(avatar, frames[index]), target)
        parts.to(dev)
        opt = torch.optim.Adam([{"params": list(parts.offset.parameters()), "lr": train_cfg.lr_grid},
                                {"params": [parts.dynamic, parts.appearance, parts.geometry],
                                 "lr": train_cfg.lr_network}], betas=(0.9, 0.99), eps=1e-15)
        seed = train_cfg.seed + 7919 * (index + 1)  # by identity, not by rank: any layout, same data
        sampler = RaySampler(avatar, training_rays(train_cfg), frames=frames[index], seed=seed)
        images, cameras = encoder_inputs(avatar, frames[index], identity_cfg)
        face = face_depth_points_for(train_cfg, avatar.root)
        mine.append(_Identity(index, names[index], avatar, parts, opt, sampler, torch.Generator().manual_seed(seed),
                              OccupancyGrid(field_cfg.box_min, field_cfg.box_max,
                                            train_cfg.occupancy_resolution).to(dev),
                              images.to(dev), cameras.to(dev), face, np.random.default_rng(seed + 2)))
    per_rank = (config.identities_per_step or info.world_size) // info.world_size
    if per_rank < 1 or (config.identities_per_step or info.world_size) % info.world_size:
        raise InputError("identities per step must be a multiple of the number of ranks")
    per_rank = min(per_rank, len(mine))

    start_step = 0
    restored = load_checkpoint(ckpt_dir) if resume else None
    if restored is not None:
        start_step, tensors, state = restored
        shared.load_state_dict({k[len("shared."):]: v for k, v in tensors.items() if k.startswith("shared.")})
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        for ident in mine:
            _load_identity(ckpt_dir, ident, start_step, dev)

    render_cfg = RenderConfig(samples_per_ray=train_cfg.samples_per_ray, stratified=True,
                              box_sampling=train_cfg.box_sampling, prune=train_cfg.prune,
                              fine_samples=train_cfg.fine_samples, fine_padding=train_cfg.fine_padding,
                              fine_with_coarse=train_cfg.fine_with_coarse)

    def checkpoint(step: int) -> None:
        for ident in mine:
            _save_identity(ckpt_dir, ident, step)
        barrier(info)
        if info.is_main:
            save_checkpoint(ckpt_dir, step, {f"shared.{k}": v for k, v in shared.state_dict().items()},
                            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "torch_rng": torch.get_rng_state()})
        barrier(info)
        for ident in mine:  # the previous generation is no longer needed once the pointer moved
            for old in (ckpt_dir / "identities").glob(f"{ident.name}.*"):
                if old.name.split(".")[1] != str(step):
                    old.unlink(missing_ok=True)

    def update_grids() -> None:
        with torch.no_grad():
            for ident in mine:
                resolved = ident.parts.resolve(shared.encoder(ident.images, ident.cameras))
                ident.grid.update(lambda pts: shared.head.canonical_density(pts, resolved), generator=ident.generator)
                dilated = torch.nn.functional.max_pool3d(ident.grid.occupied[None, None].float(), 3, 1, 1)[0, 0] > 0
                ident.grid.occupied.copy_(dilated)

    log_path = out / "pretrain_log.csv"
    writer = log_file = None
    if info.is_main:
        new_log = not log_path.exists() or start_step == 0
        log_file = open(log_path, "w" if new_log else "a", newline="")
        writer = csv.writer(log_file)
        if new_log:
            writer.writerow(["step", "loss", "psnr", "lr_grid", "lr_network", "elapsed_s"])
        (out / "pretrain.json").write_text(json.dumps({
            "lokitalk_version": __version__, "avatars": [str(a.resolve()) for a in avatar_dirs],
            "identities": names, "world_size": info.world_size, "device": str(dev),
            "pretrain": {"identities_per_step": per_rank * info.world_size,
                         "residual_weight": config.residual_weight, "code_weight": config.code_weight,
                         "lip_components": config.lip_components, "lip_scaling": config.lip_scaling,
                         "torso_motion": config.torso_motion},
            "train": {k: v for k, v in train_cfg.__dict__.items() if k != "model"},
            "consents": [c["consent_id"] for c in consents]}, indent=2))
    progress = progress_bar("pretrain", show_progress and info.is_main, train_cfg.steps, start_step)
    started = time.perf_counter()
    last_loss = float("nan")
    step = start_step
    stopped_early = False
    try:
        for step in range(start_step, train_cfg.steps):
            if stop_after is not None and step - start_step >= stop_after:
                stopped_early = True
                break
            if time_limit_s is not None and time.perf_counter() - started > time_limit_s:
                break
            chosen = [mine[(step * per_rank + k) % len(mine)] for k in range(per_rank)]
            items = [i.item(train_cfg) for i in chosen]
            with accel.autocast(dev):
                loss, mse = ddp(items, render_cfg, train_cfg, config.code_weight, config.residual_weight)
            optimizer.zero_grad(set_to_none=True)
            for ident in chosen:
                ident.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr_scale = decay ** step
            for own in chosen:  # distinct identities (per_rank <= identities owned)
                for group, base in zip(own.optimizer.param_groups, (train_cfg.lr_grid, train_cfg.lr_network)):
                    group["lr"] = base * lr_scale
                if info.world_size > 1:  # DDP averaged the shared gradients over ranks: scale the own ones alike
                    for p in own.parts.parameters():
                        if p.grad is not None:
                            p.grad.div_(info.world_size)
                own.optimizer.step()
            optimizer.step()
            scheduler.step()
            done = step + 1
            if done >= train_cfg.occupancy_warmup and done % train_cfg.occupancy_every == 0:
                update_grids()
            last_loss = mean_over_ranks(loss.detach().item(), info)
            if done % train_cfg.log_every == 0 or done == train_cfg.steps:
                mean_mse = mean_over_ranks(float(mse), info)
                if writer is not None:
                    writer.writerow([done, f"{last_loss:.6f}", f"{psnr(mean_mse):.3f}",
                                     f"{scheduler.get_last_lr()[0]:.3e}", f"{scheduler.get_last_lr()[1]:.3e}",
                                     f"{time.perf_counter() - started:.1f}"])
                    log_file.flush()
            if done % train_cfg.checkpoint_every == 0 or done == train_cfg.steps:
                checkpoint(done)
            progress(done, last_loss)
        else:
            step = train_cfg.steps
        if not stopped_early and step != start_step and (load_checkpoint(ckpt_dir) or (0,))[0] != step:
            checkpoint(step)  # a time limit ended the loop between checkpoints
    finally:
        if log_file is not None:
            log_file.close()
        progress(None, None)
    reached = (load_checkpoint(ckpt_dir) or (0,))[0]
    finished = not stopped_early and reached == step
    summary = {"steps": reached, "planned_steps": train_cfg.steps, "finished": finished, "last_loss": last_loss,
               "elapsed_s": round(time.perf_counter() - started, 2), "world_size": info.world_size,
               "backend": info.backend, "identities": len(avatars), "device": str(dev), "amp": accel.amp}
    if finished:
        states = gather_to_main({i.name: {k: v.detach().cpu() for k, v in i.parts.state_dict().items()}
                                 for i in mine}, info)
        if info.is_main:
            parts = {name: state for rank_states in states for name, state in rank_states.items()}
            head = {k: v.detach().cpu() for k, v in shared.head.state_dict().items()}
            encoder = {k: v.detach().cpu() for k, v in shared.encoder.state_dict().items()}
            meta = {"lokitalk_version": __version__, "preset": train_cfg.preset, "steps": reached,
                    "world_size": info.world_size, "avatars": [str(a.resolve()) for a in avatar_dirs],
                    "consents": [c["consent_id"] for c in consents],
                    "pretrain": {"identities_per_step": per_rank * info.world_size,
                                 "residual_weight": config.residual_weight, "torso_motion": config.torso_motion,
                                 "train": {k: v for k, v in train_cfg.__dict__.items() if k != "model"}}}
            save_prior(Prior(model_cfg, space, head, encoder, parts, meta, target), out / "prior")
            summary["prior"] = str(out / "prior")
    # every rank waits here until the gather has completed everywhere: a rank that tore down its
    # gloo group while the main rank was still receiving aborted now and then ("terminate called
    # without an active exception", exit -6, seen once in a fresh-clone CI run)
    barrier(info)
    return summary


def _save_identity(ckpt_dir: Path, ident: _Identity, step: int) -> None:
    base = ckpt_dir / "identities" / f"{ident.name}.{step}"
    tensors = {f"parts.{k}": v for k, v in ident.parts.state_dict().items()}
    tensors.update({f"grid.{k}": v.float() if v.dtype == torch.bool else v for k, v in ident.grid.state_dict().items()})
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(base) + ".safetensors.tmp")
    torch.save({"step": step, "optimizer": ident.optimizer.state_dict(),
                "sampler_rng": ident.sampler.rng.bit_generator.state, "generator": ident.generator.get_state(),
                "depth_rng": ident.depth_rng.bit_generator.state},
               str(base) + ".pt.tmp")
    Path(str(base) + ".safetensors.tmp").replace(str(base) + ".safetensors")
    Path(str(base) + ".pt.tmp").replace(str(base) + ".pt")


def _load_identity(ckpt_dir: Path, ident: _Identity, step: int, dev: torch.device) -> None:
    base = ckpt_dir / "identities" / f"{ident.name}.{step}"
    if not Path(str(base) + ".pt").exists():
        raise InputError(f"checkpoint of step {step} has no state for identity {ident.name} ({base}.pt)")
    tensors = load_file(str(base) + ".safetensors")
    ident.parts.load_state_dict({k[len("parts."):]: v for k, v in tensors.items() if k.startswith("parts.")})
    grid_state = {k[len("grid."):]: v for k, v in tensors.items() if k.startswith("grid.")}
    grid_state["occupied"] = grid_state["occupied"].bool()
    ident.grid.load_state_dict(grid_state)
    state = torch.load(str(base) + ".pt", weights_only=False)
    ident.optimizer.load_state_dict(state["optimizer"])
    ident.sampler.rng.bit_generator.state = state["sampler_rng"]
    ident.generator.set_state(state["generator"])
    if "depth_rng" in state:  # checkpoints from before face depth
        ident.depth_rng.bit_generator.state = state["depth_rng"]
