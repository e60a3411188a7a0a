"""The training loop for one person: `lokitalk train AVATAR_DIR --out MODEL_DIR`.

Training frames only (the avatar's split); per-frame conditioning travels in the batch. The
occupancy grid is refreshed by a periodic callback. A checkpoint every `checkpoint_every` steps
holds the model, the grid, the optimizer and every random state, so `--resume` after a kill
continues the same trajectory, losing at most the steps since the last checkpoint.

`train_seconds` restricts training to the first seconds of the train split (the test frames stay
the avatar's own). With `prior` (a folder written by `lokitalk pretrain`) the model is the
prior's, the person's parts start from its ID encoder and a fine-tuning schedule
(lokitalk.train.prior.finetune_schedule) decides when the shared weights may move.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..data.avatar import load_avatar, training_frames
from ..data.rays import RayBatchConfig, RaySampler
from ..errors import InputError
from ..model.field import TalkingHead
from ..model.renderer import OccupancyGrid, RenderConfig
from ..model.rigid import mean_pose
from ..render.frames import render_batch
from .accelerate import accelerate_model, resolve
from .checkpoint import load_checkpoint, model_config_to_dict, save_checkpoint
from .config import TrainConfig, lpips_patch_regions, training_rays
from .face_depth import face_depth_batch, face_depth_loss, face_depth_points_for
from .body_refine import FrameBodyCorrections
from .pose_refine import FramePoseCorrections, fit_pose_calibration
from .losses import (attention_loss, batch_speech, displacement_loss, distortion_loss, opacity_loss,
                     photometric_loss, psnr)
from .progress import progress_bar

MODEL_FORMAT = "lokitalk-model/1"


@dataclass
class Callback:
    """Periodic work: run `fn(step)` every `every` steps from `start` on."""

    every: int
    fn: Callable[[int], None]
    start: int = 0

    def maybe_run(self, step: int) -> None:
        if step >= self.start and step % self.every == 0:
            self.fn(step)


def choose_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but this torch has no CUDA device")
    return torch.device(requested)


def _parameter_groups(model: TalkingHead, config: TrainConfig) -> list[dict]:
    """[shared grid, shared nets] and, for a model with an identity, [its offset grid, its codes];
    a from-scratch run with a deformation warm-up has the deformation nets as a third group."""
    grid_params = model.grid_parameters()
    identity = getattr(model, "identity", None)
    own = [] if identity is None else list(identity.parameters())
    own_grid = [] if identity is None else list(identity.offset.parameters())
    taken = {id(p) for p in grid_params + own}
    rest = [p for p in model.parameters() if id(p) not in taken]
    if identity is None and config.deformation_warmup > 0:
        deforming = {id(p) for p in model.deformation.parameters()}
        return [{"params": grid_params, "lr": config.lr_grid},
                {"params": [p for p in rest if id(p) not in deforming], "lr": config.lr_network},
                {"params": [p for p in rest if id(p) in deforming], "lr": config.lr_network}]
    groups = [{"params": grid_params, "lr": config.lr_grid}, {"params": rest, "lr": config.lr_network}]
    if identity is not None:
        grid_ids = {id(p) for p in own_grid}
        groups += [{"params": own_grid, "lr": config.lr_grid},
                   {"params": [p for p in own if id(p) not in grid_ids], "lr": config.lr_network}]
    return groups


def learning_rate_factors(config: TrainConfig, schedule=None) -> list:
    """One factor of the starting learning rate per parameter group (`_parameter_groups`' order) and
    step: exponential decay to `lr_final_fraction`; a prior's fine-tuning schedule on the shared
    groups; the deformation warm-up's linear ramp on its own group."""
    if config.deformation_warmup < 0:
        raise InputError(f"deformation_warmup is a step count, 0 or more, not {config.deformation_warmup}")
    decay = config.lr_final_fraction ** (1.0 / max(config.steps, 1))
    if schedule is not None:  # shared grid, shared nets, own grid, own codes
        return [lambda s: decay**s * schedule.shared_factor(s, True),
                lambda s: decay**s * schedule.shared_factor(s, False), lambda s: decay**s, lambda s: decay**s]
    factors = [lambda s: decay**s] * 2
    if config.deformation_warmup > 0:  # the third group of `_parameter_groups`
        warmup = config.deformation_warmup
        factors.append(lambda s: decay**s * min(1.0, (s + 1) / warmup))
    return factors


def lip_input_scale(lip_features, mode: str) -> float:
    """The model's lip_scale for `TrainConfig.lip_input`: "raw" keeps the prepared feature;
    "unit" divides it by its overall spread on the training frames (the root of the summed
    per-component variances), so the whole feature spreads ~1 while its components keep their
    relative sizes (unlike whitening each component: docs/RESULTS.md, demo section)."""
    if mode == "raw":
        return 1.0
    if mode != "unit":
        raise InputError(f"lip_input must be raw or unit, not {mode!r}")
    spread = float(np.sqrt(np.asarray(lip_features, np.float64).var(axis=0).sum()))
    return 1.0 / spread if spread > 1e-12 else 1.0


def eye_input_transform(eye_ratios, mode: str) -> tuple[float, float]:
    """(eye_mean, eye_scale) for `TrainConfig.eye_input`: "raw" passes the eye ratio as prepared
    (~0.25, spread ~0.03); "unit" centres it on its training mean and divides by its spread."""
    if mode == "raw":
        return 0.0, 1.0
    if mode != "unit":
        raise InputError(f"eye_input must be raw or unit, not {mode!r}")
    values = np.asarray(eye_ratios, np.float64)
    spread = float(values.std())
    return float(values.mean()), (1.0 / spread if spread > 1e-12 else 1.0)


def position_frequencies(config: TrainConfig, seconds: float) -> int:
    """The deformation nets' position frequency count for `seconds` of training video: one band
    finer than the preset's with enough video to pin the finer motion down (blinks deepened), the
    preset's with less (the finer bands fitted the few training views at the cost of unseen ones)."""
    base = config.model.deformation.posenc_frequencies
    fine = config.fine_deformation_seconds is not None and seconds >= config.fine_deformation_seconds
    return base + 1 if fine else base


def build_model(config: TrainConfig, lip_features: np.ndarray, eye_ratios: np.ndarray, device: torch.device,
                seconds: float = 0.0, poses: tuple[np.ndarray, np.ndarray] | None = None) -> TalkingHead:
    """A fresh model for lip features [N,K] and eye ratios [N,2] (those of the training frames),
    `seconds` of training video; `poses` (rotations [N,3,3], translations [N,3] of the same frames)
    give a camera-rigid torso stage its reference pose, their mean."""
    eye_mean, eye_scale = eye_input_transform(eye_ratios, config.eye_input)
    reference_pose = config.model.deformation.reference_pose
    if config.model.deformation.torso_motion == "rigid":
        if poses is None:
            raise ValueError("a rigid torso stage needs the training frames' poses for its reference pose")
        reference_pose = mean_pose(*poses)
    deformation = replace(config.model.deformation, lip_dim=lip_features.shape[1], reference_pose=reference_pose,
                          lip_scale=lip_input_scale(lip_features, config.lip_input),
                          eye_mean=eye_mean, eye_scale=eye_scale,
                          posenc_frequencies=position_frequencies(config, seconds))
    return TalkingHead(replace(config.model, deformation=deformation)).to(device)


def train(avatar_dir: Path, model_dir: Path, config: TrainConfig, device: str = "auto", resume: bool = False,
          show_progress: bool = True, stop_after: int | None = None, prior: Path | None = None) -> dict:
    """Train (or resume) a model; returns a summary. `stop_after` ends the run early after
    that many steps of this call (used to simulate a kill in tests). `prior`: fine-tune the
    prior at that path (its model config replaces the preset's)."""
    from ..provenance.consent import check_block

    avatar = load_avatar(avatar_dir)
    consent = check_block(avatar.consent, "train", f"avatar {avatar_dir}")
    model_dir = Path(model_dir)
    dev = choose_device(device)
    if config.neck_attention not in ("torso", "free"):
        raise InputError(f"neck_attention must be torso or free, not {config.neck_attention!r}")
    if model_dir.exists() and not resume and any(model_dir.iterdir()):
        raise InputError(f"{model_dir} exists: pass --resume to continue it, or choose another --out")
    model_dir.mkdir(parents=True, exist_ok=True)

    frames = training_frames(avatar, config.train_seconds)
    previous = json.loads((model_dir / "model.json").read_text()) if (model_dir / "model.json").exists() else {}
    if resume and previous:
        # a run continues with the signal inputs and position encoding it started with (folders
        # from before these settings: raw inputs, the preset's encoding)
        started = previous.get("train", {})
        config = replace(config, lip_input=started.get("lip_input", "raw"), eye_input=started.get("eye_input", "raw"),
                         fine_deformation_seconds=started.get("fine_deformation_seconds"),
                         pose_refinement=bool(started.get("pose_refinement", False)),
                         body_refinement=bool(started.get("body_refinement", False)),
                         face_depth_weight=float(started.get("face_depth_weight", 0.0)),
                         face_depth_lower_face=bool(started.get("face_depth_lower_face", False)))
        started_torso = previous.get("model", {}).get("deformation", {}).get("torso_motion", "learned")
        if config.model.deformation.kind == "region":
            config = replace(config, model=replace(config.model, deformation=replace(
                config.model.deformation, torso_motion=started_torso)))
    # the model keeps the corrections' pose-dependent part for the frames it never trained on
    config = replace(config, model=replace(config.model, pose_calibration=config.pose_refinement))
    torch.manual_seed(config.seed)
    schedule = None
    if prior is None:
        model = build_model(config, avatar.lip_feature[frames], avatar.eye_ratio[frames], dev,
                            len(frames) / avatar.fps, poses=(avatar.rotation[frames], avatar.translation[frames]))
    else:
        from .prior import finetune_model, finetune_schedule, load_prior

        model = finetune_model(load_prior(prior), avatar, frames, dev, pose_calibration=config.pose_refinement)
        schedule = finetune_schedule(len(frames) / avatar.fps, config.steps, config.finetune_schedule)
    model.track_displacement = config.displacement_weight > 0  # before compiling: the compiled path reads it
    field_cfg = model.config.field
    accel = resolve(dev, config.amp, config.compile)
    accelerate_model(model, accel)
    grid = OccupancyGrid(field_cfg.box_min, field_cfg.box_max, config.occupancy_resolution).to(dev)
    optimizer = torch.optim.Adam(_parameter_groups(model, config), betas=(0.9, 0.99), eps=1e-15)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, learning_rate_factors(config, schedule))
    sampler = RaySampler(avatar, training_rays(config), frames=frames, seed=config.seed)
    poses, pose_optimizer, pose_first_step = None, None, config.steps
    bodies, body_optimizer = None, None
    if config.pose_refinement or config.body_refinement:
        if not 0.0 <= config.pose_start <= 1.0:
            raise InputError(f"pose_start is a share of the steps, between 0 and 1, not {config.pose_start}")
        if config.pose_knot_frames < 1:
            raise InputError(f"pose_knot_frames is a frame count, 1 or more, not {config.pose_knot_frames}")
        pose_first_step = int(round(config.pose_start * config.steps))
    if config.pose_refinement:
        poses = FramePoseCorrections(avatar.num_frames, frames, config.pose_knot_frames).to(dev)
        # beta2 0.99: SparseAdam corrects its moments' bias by the table's step count, not a knot's,
        # so a knot's first update is lr (1 - beta1) / sqrt(1 - beta2): 3.2 lr at beta2 0.999
        pose_optimizer = torch.optim.SparseAdam(list(poses.parameters()), lr=config.pose_lr, betas=(0.9, 0.99))
    if config.body_refinement:
        deform = model.config.deformation
        if deform.kind != "region" or deform.torso_motion != "rigid":
            raise InputError("body refinement needs a region model with a rigid torso stage (--torso-motion rigid)")
        bodies = FrameBodyCorrections(avatar.num_frames, frames, config.pose_knot_frames).to(dev)
        body_optimizer = torch.optim.SparseAdam(list(bodies.parameters()), lr=config.pose_lr, betas=(0.9, 0.99))

    def corrected(batch: dict) -> dict:
        """A training batch with its frame's learned corrections: head pose, then body."""
        batch = batch if poses is None else poses(batch)
        return batch if bodies is None else bodies(batch)
    generator = torch.Generator().manual_seed(config.seed)
    render_cfg = RenderConfig(samples_per_ray=config.samples_per_ray, stratified=True,
                              box_sampling=config.box_sampling, prune=config.prune, fine_samples=config.fine_samples,
                              fine_padding=config.fine_padding, fine_with_coarse=config.fine_with_coarse)
    if not config.distortion_weight >= 0:  # also NaN
        raise InputError(f"distortion_weight must be 0 or more, not {config.distortion_weight}")
    patch_sampler, lpips_net = None, None
    if config.lpips_weight > 0:
        from ..evaluate.lpips import LPIPS

        if not 0.0 <= config.lpips_start <= 1.0:
            raise InputError(f"lpips_start is a share of the steps, between 0 and 1, not {config.lpips_start}")

        lpips_net = LPIPS("alex").to(dev)  # frozen; a missing install is a one-line error
        patch_size = min(config.patch_size, int(avatar.camera.width * config.image_scale))
        patch_sampler = RaySampler(avatar, RayBatchConfig(0, patch_size, 0.0, config.image_scale,
                                                          patch_regions=lpips_patch_regions(config)),
                                   frames=frames, seed=config.seed + 1)
    lpips_first_step = int(round(config.lpips_start * config.steps))
    face, depth_rng = face_depth_points_for(config, avatar_dir), np.random.default_rng(config.seed + 2)

    # a stable id for this model: it names the model in every watermark and manifest it stamps
    model_id = previous.get("model_id") or uuid.uuid4().hex
    (model_dir / "model.json").write_text(json.dumps({
        "format": MODEL_FORMAT, "model_id": model_id, "lokitalk_version": __version__,
        "avatar": str(Path(avatar_dir).resolve()),
        "avatar_identity": avatar.summary.get("source", {}), "preset": config.preset,
        "model": model_config_to_dict(model.config), "train": {k: v for k, v in config.__dict__.items()
                                                               if k != "model"},
        "device": str(dev), "consent": consent,
        **({} if prior is None else {"prior": str(Path(prior).resolve()), "finetune": schedule.__dict__})}, indent=2))

    start_step = 0
    restored = load_checkpoint(model_dir) if resume else None
    if restored is not None:
        start_step, tensors, state = restored
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        grid_state = {k[len("grid."):]: v for k, v in tensors.items() if k.startswith("grid.")}
        grid_state["occupied"] = grid_state["occupied"].bool()
        grid.load_state_dict(grid_state)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        if patch_sampler is not None and "patch_rng" in state:
            patch_sampler.rng.bit_generator.state = state["patch_rng"]
        if state.get("depth_rng") is not None:
            depth_rng.bit_generator.state = state["depth_rng"]
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if poses is not None:
            poses.load_state_dict({k[len("poses."):]: v for k, v in tensors.items() if k.startswith("poses.")})
            pose_optimizer.load_state_dict(state["pose_optimizer"])
        if bodies is not None:
            bodies.load_state_dict({k[len("bodies."):]: v for k, v in tensors.items() if k.startswith("bodies.")})
            body_optimizer.load_state_dict(state["body_optimizer"])

    def fit_calibration() -> None:
        """The model's pose correction for frames not trained on: the part of the corrections so
        far that the tracked pose predicts (rendering alone reads it, so any checkpoint renders
        as the finished model would, and training is unchanged)."""
        with torch.no_grad():
            model.pose_calibration.copy_(torch.from_numpy(fit_pose_calibration(
                avatar.rotation[frames], avatar.translation[frames], poses.rows(frames).double().cpu().numpy())))

    def checkpoint(step: int) -> None:
        if poses is not None:
            fit_calibration()
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        # safetensors has bool, but one float dtype keeps the file simple for other readers
        tensors.update({f"grid.{k}": v.float() if v.dtype == torch.bool else v for k, v in grid.state_dict().items()})
        if poses is not None:  # readers of the model take "model." and "grid." only
            tensors.update({f"poses.{k}": v for k, v in poses.state_dict().items()})
        if bodies is not None:
            tensors.update({f"bodies.{k}": v for k, v in bodies.state_dict().items()})
        save_checkpoint(model_dir, step, tensors, {
            **({} if pose_optimizer is None else {"pose_optimizer": pose_optimizer.state_dict()}),
            **({} if body_optimizer is None else {"body_optimizer": body_optimizer.state_dict()}),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "sampler_rng": sampler.rng.bit_generator.state, "generator": generator.get_state(),
            "patch_rng": patch_sampler.rng.bit_generator.state if patch_sampler is not None else None,
            "depth_rng": depth_rng.bit_generator.state if face is not None else None,
            "torch_rng": torch.get_rng_state()})

    def update_grid(step: int) -> None:
        grid.update(model.canonical_density, generator=generator)
        # deformations move points by millimetres: keep one cell of margin around what is occupied
        dilated = torch.nn.functional.max_pool3d(grid.occupied[None, None].float(), 3, 1, 1)[0, 0] > 0
        grid.occupied.copy_(dilated)

    callbacks = [Callback(config.occupancy_every, update_grid, config.occupancy_warmup)]
    log_path = model_dir / "train_log.csv"
    new_log = not log_path.exists() or start_step == 0
    log_file = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.writer(log_file)
    if new_log:
        writer.writerow(["step", "loss", "psnr", "lr_grid", "lr_network", "occupied", "elapsed_s"])
    progress = progress_bar("train", show_progress, config.steps, start_step)
    started = time.perf_counter()
    last_loss = float("nan")
    try:
        for step in range(start_step, config.steps):
            if stop_after is not None and step - start_step >= stop_after:
                break
            batch = sampler.sample()
            depth_batch = None if face is None else face_depth_batch(
                batch, face, config.face_depth_rays, config.face_depth_min_facing, depth_rng)
            batch = corrected(batch)
            depth_batch = None if depth_batch is None else corrected(depth_batch)
            with accel.autocast(dev):
                out = render_batch(model, batch, grid, render_cfg, generator)
            target = batch["rgb"].to(dev)
            labels = batch["labels"].to(dev)
            photo = photometric_loss(out.rgb, target, labels, config.mouth_weight, config.eye_weight)
            loss = photo + config.alpha_weight * opacity_loss(out.opacity, batch["alpha"].to(dev))
            if config.distortion_weight > 0:
                loss = loss + config.distortion_weight * distortion_loss(out.weights, out.distances, out.deltas,
                                                                         render_cfg.far - render_cfg.near)
            if config.model.deformation.kind == "region" and config.attention_weight > 0:
                loss = loss + config.attention_weight * attention_loss(out.extras, labels, batch_speech(batch, dev),
                                                                         config.neck_attention == "free")
            if config.displacement_weight > 0 and (config.displacement_steps is None or step < config.displacement_steps):
                loss = loss + config.displacement_weight * displacement_loss(out.extras, config.displacement_unattended)
            if depth_batch is not None:
                with accel.autocast(dev):
                    depth_out = render_batch(model, depth_batch, grid, render_cfg, generator)
                loss = loss + config.face_depth_weight * face_depth_loss(depth_out.depth.float(), depth_out.opacity.float(),
                                                                         depth_batch["depth_target"])
            if lpips_net is not None and step >= lpips_first_step and step % config.lpips_every == 0:
                with accel.autocast(dev):
                    loss = loss + config.lpips_weight * _patch_lpips(model, patch_sampler, lpips_net, grid,
                                                                     render_cfg, generator, dev, corrected)
            optimizer.zero_grad(set_to_none=True)
            for frame_optimizer in (pose_optimizer, body_optimizer):
                if frame_optimizer is not None:
                    frame_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step >= pose_first_step:
                for frame_optimizer, table in ((pose_optimizer, poses), (body_optimizer, bodies)):
                    if frame_optimizer is not None:
                        frame_optimizer.step()
                        table.recentre()
            last_loss = loss.detach().item()
            done = step + 1
            for callback in callbacks:
                callback.maybe_run(done)
            if done % config.log_every == 0 or done == config.steps:
                mse = float(((out.rgb.detach() - target) ** 2).mean())
                writer.writerow([done, f"{last_loss:.6f}", f"{psnr(mse):.3f}", f"{scheduler.get_last_lr()[0]:.3e}",
                                 f"{scheduler.get_last_lr()[1]:.3e}", f"{float(grid.occupied.float().mean()):.4f}",
                                 f"{time.perf_counter() - started:.1f}"])
                log_file.flush()
            if done % config.checkpoint_every == 0 or done == config.steps:
                checkpoint(done)
            progress(done, last_loss)
    finally:
        log_file.close()
        progress(None, None)
    finished = (load_checkpoint(model_dir) or (0,))[0] >= config.steps
    if finished:
        _export_final(model_dir)
    runner = model.point_runner
    return {"steps": (load_checkpoint(model_dir) or (0,))[0], "finished": finished,
            "consent_id": consent["consent_id"], "last_loss": last_loss,
            "elapsed_s": round(time.perf_counter() - started, 2), "device": str(dev), "amp": accel.amp,
            "compiled": bool(runner is not None and runner.fallback_reason is None),
            "compile_fallback": None if runner is None else runner.fallback_reason,
            **({} if poses is None else {"pose_corrections": poses.summary()}),
            **({} if bodies is None else {"body_corrections": bodies.summary()})}


def _patch_lpips(model, sampler: RaySampler, lpips_net, grid, render_cfg, generator, dev,
                 corrected=None) -> torch.Tensor:
    """LPIPS between a rendered square patch and the real one (perceptual detail: teeth, lips).
    `corrected`: applies the frame's learned corrections to a batch (pose and body refinement)."""
    batch = sampler.sample()
    if corrected is not None:
        batch = corrected(batch)
    out = render_batch(model, batch, grid, render_cfg, generator)
    side = sampler.config.patch_size
    rendered = out.rgb.reshape(1, side, side, 3).permute(0, 3, 1, 2) * 2 - 1
    real = batch["rgb"].to(dev).reshape(1, side, side, 3).permute(0, 3, 1, 2) * 2 - 1
    return lpips_net(rendered, real).mean()


def _export_final(model_dir: Path) -> None:
    """The finished model: the last checkpoint's tensors under the name readers look for."""
    import shutil

    tmp = model_dir / "model.safetensors.tmp"
    shutil.copyfile(model_dir / "checkpoint.safetensors", tmp)
    tmp.replace(model_dir / "model.safetensors")
