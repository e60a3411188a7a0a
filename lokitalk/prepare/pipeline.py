"""`lokitalk prepare`: the steps from a raw clip to an avatar folder, wired to the runner.

Each step here is thin: it reads what earlier steps wrote, calls the pure functions of its
module, and writes its own files. The avatar layout is documented in docs/AVATAR_FORMAT.md and
read back by `lokitalk.data.avatar`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import __version__
from ..errors import InputError
from ..face_model import load_face_template
from ..media.audio import SAMPLE_RATE, has_audio_stream, load_audio, write_wav
from ..media.video import iter_frames, probe_video
from .audio_features import AudioFeatureSpec, audio_features
from .av_offset import OffsetConfig, estimate_offset, shift_audio, speech_energy_db
from .crop import CropBox, CropConfig, choose_crop
from .landmarks import LandmarkConfig, check_faces, fill_gaps, locate_faces, track_landmarks
from .pose import PoseConfig, euler_from_rotation, fit_head_pose
from .runner import Reporter, Step, StepContext, StepRunner, file_identity, write_json_atomic
from .signals import (LipBasis, SignalConfig, align_to_head_frame, detect_blinks, eye_ratio,
                      fit_lip_basis, mouth_opening, rebase_lip_basis)

AVATAR_FORMAT = "lokitalk-avatar/1"
FPS = 25.0
FAST_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # per-frame mattes and labels: speed over bytes


@dataclass(frozen=True)
class PrepareConfig:
    fps: float = FPS
    min_duration_s: float = 2.0
    min_audio_coverage: float = 0.9  # audio shorter than this fraction of the video is an error
    locate_fps: float = 2.0  # frames per second sampled to find the face and check for others
    jpeg_quality: int = 95
    test_fraction: float = 0.1
    av_offset: str = "auto"  # "auto": apply a confident estimate; "none"; or a number of ms
    crop: CropConfig = field(default_factory=CropConfig)
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    signals: SignalConfig = field(default_factory=SignalConfig)
    offset: OffsetConfig = field(default_factory=OffsetConfig)
    audio: AudioFeatureSpec = field(default_factory=AudioFeatureSpec)


def frame_path(root: Path, index: int, kind: str = "frames") -> Path:
    """frames/*.jpg (RGB), alpha/*.png (person matte 0-255), masks/*.png (Region labels)."""
    return root / kind / f"{index:06d}.{'jpg' if kind == 'frames' else 'png'}"


def load_frames(ctx: StepContext) -> np.ndarray:
    """The prepared RGB frames, decoded once per run (from memory when the media step ran)."""
    if "frames" not in ctx.cache:
        n = ctx.results["media"]["frames"]
        ctx.cache["frames"] = np.stack([
            cv2.cvtColor(cv2.imread(str(frame_path(ctx.work_dir, i))), cv2.COLOR_BGR2RGB) for i in range(n)])
    return ctx.cache["frames"]


# ----------------------------------------------------------------------------- steps

def step_locate(ctx: StepContext) -> dict[str, Any]:
    cfg: PrepareConfig = ctx.params["config"]
    video: Path = ctx.params["video"]
    info = probe_video(video)
    if info.duration_s < cfg.min_duration_s:
        raise InputError(f"{video}: the clip is {info.duration_s:.1f} s long; prepare needs at least "
                         f"{cfg.min_duration_s:.0f} s of video")
    audio_source = ctx.params.get("audio") or video
    if ctx.params.get("audio") is None and not info.has_audio:
        raise InputError(f"{video} has no audio stream; pass the speech as --audio FILE")
    if ctx.params.get("audio") is not None and not has_audio_stream(audio_source):
        raise InputError(f"{audio_source} has no audio stream")
    sampled = ((i, frame) for i, frame in enumerate(iter_frames(video, fps=cfg.locate_fps)))
    boxes = locate_faces(sampled, cfg.landmarks)
    check_faces(boxes, str(video), cfg.landmarks)
    crop = choose_crop(boxes.boxes, info.width, info.height, cfg.crop)
    return {"source": {"path": str(video), "width": info.width, "height": info.height, "fps": info.fps,
                       "duration_s": info.duration_s, "codec": info.codec},
            "audio_source": str(audio_source),
            "crop": {"x0": crop.x0, "y0": crop.y0, "side": crop.side, "out_size": crop.out_size}}


def step_media(ctx: StepContext) -> dict[str, Any]:
    cfg: PrepareConfig = ctx.params["config"]
    located = ctx.results["locate"]
    crop = CropBox(**located["crop"])
    (ctx.work_dir / "frames").mkdir(exist_ok=True)
    expected = int(located["source"]["duration_s"] * cfg.fps)
    frames = []
    for i, frame in enumerate(iter_frames(ctx.params["video"], fps=cfg.fps)):
        out = crop.apply(frame)
        frames.append(out)
        cv2.imwrite(str(frame_path(ctx.work_dir, i)), cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        ctx.progress(1, expected)
    ctx.cache["frames"] = np.stack(frames)
    video_s = len(frames) / cfg.fps
    audio = load_audio(located["audio_source"], SAMPLE_RATE)
    audio_s = len(audio) / SAMPLE_RATE
    if audio_s < cfg.min_audio_coverage * video_s:
        raise InputError(f"{located['audio_source']}: the audio lasts {audio_s:.1f} s but the video "
                         f"{video_s:.1f} s; give the clip's full soundtrack")
    # exactly as long as the video: trim, or pad a short tail with silence
    target = int(round(video_s * SAMPLE_RATE))
    audio = np.pad(audio, (0, max(0, target - len(audio))))[:target]
    write_wav(ctx.path("audio_source.wav"), audio, SAMPLE_RATE)
    return {"frames": len(frames), "size": crop.out_size, "audio_s": audio_s}


def step_analyse(ctx: StepContext) -> dict[str, Any]:
    """The two per-frame networks: face mesh and person segmentation. They run in two threads
    (mediapipe releases the GIL), which halves the wall time on a 2-core machine."""
    from concurrent.futures import ThreadPoolExecutor

    from .segmentation import segment_person

    cfg: PrepareConfig = ctx.params["config"]
    frames = load_frames(ctx)
    with ThreadPoolExecutor(max_workers=2) as pool:
        person_job = pool.submit(segment_person, frames)
        points, detected = track_landmarks(frames, cfg.landmarks, on_frame=lambda: ctx.progress(1, len(frames)))
        person = person_job.result()
    coverage = float(detected.mean())
    if coverage < cfg.landmarks.min_face_coverage:
        raise InputError(f"{ctx.params['video']}: a face was tracked in only {100 * coverage:.0f}% of "
                         "the frames; LokiTalk needs one person facing the camera throughout")
    max_gap = int(round(cfg.landmarks.max_gap_s * cfg.fps))
    filled, valid = fill_gaps(points, detected, max_gap)
    np.save(ctx.path("landmarks.npy"), filled.astype(np.float32))
    np.save(ctx.path("valid.npy"), valid)
    (ctx.work_dir / "alpha").mkdir(exist_ok=True)
    for i, matte in enumerate(person):
        cv2.imwrite(str(frame_path(ctx.work_dir, i, "alpha")), matte, FAST_PNG)
    ctx.cache["person"] = person
    return {"face_coverage": coverage, "valid_fraction": float(valid.mean()),
            "interpolated_frames": int((valid & ~detected).sum())}


def step_pose(ctx: StepContext) -> dict[str, Any]:
    cfg: PrepareConfig = ctx.params["config"]
    template = load_face_template()
    landmarks = np.load(ctx.path("landmarks.npy"))
    valid = np.load(ctx.path("valid.npy"))
    size = ctx.results["media"]["size"]
    fit = fit_head_pose(landmarks, template.vertices, template.rigid, size, size, cfg.pose)
    euler = euler_from_rotation(fit.rotation)
    np.savez(ctx.path("pose.npz"), rotation=fit.rotation.astype(np.float32),
             translation=fit.translation.astype(np.float32), euler_deg=euler.astype(np.float32),
             reprojection_error_px=fit.per_frame_error_px.astype(np.float32),
             shape=fit.shape.astype(np.float32), shape_ids=fit.point_ids)
    camera = {"model": "pinhole", "convention": "opencv", "focal_px": fit.focal_px,
              "focal_source": fit.focal_source, "cx": fit.cx,
              "cy": fit.cy, "width": size, "height": size}
    write_json_atomic(ctx.path("camera.json"), camera)
    return {"focal_px": fit.focal_px, "focal_source": fit.focal_source,
            "reprojection_error_px": float(fit.per_frame_error_px[valid].mean()) if valid.any()
            else fit.reprojection_error_px,
            "yaw_range_deg": [float(euler[:, 0].min()), float(euler[:, 0].max())],
            "pitch_range_deg": [float(euler[:, 1].min()), float(euler[:, 1].max())]}


def step_signals(ctx: StepContext) -> dict[str, Any]:
    cfg: PrepareConfig = ctx.params["config"]
    template = load_face_template()
    landmarks = np.load(ctx.path("landmarks.npy"))
    valid = np.load(ctx.path("valid.npy"))
    head = align_to_head_frame(landmarks, template)
    eyes = eye_ratio(head, template)
    blinks = detect_blinks(eyes.mean(1), cfg.fps, cfg.signals)
    mouth = mouth_opening(head, template)
    mouth_points = head[:, template.mouth_points]
    shared: Path | None = ctx.params.get("lip_basis")
    if shared is not None:
        basis = rebase_lip_basis(LipBasis.from_arrays(np.load(shared)), mouth_points, valid)
    else:
        basis = fit_lip_basis(mouth_points, template, cfg.signals.lip_components, valid)
    np.savez(ctx.path("lip_basis.npz"), **basis.to_arrays())
    np.savez(ctx.path("signals.npz"), eye_ratio=eyes.astype(np.float32),
             mouth_opening=mouth.astype(np.float32), lip_feature=basis.encode(mouth_points).astype(np.float32),
             blinks=np.array(blinks, np.int32).reshape(-1, 2), head_landmarks=head.astype(np.float32))
    return {"blinks": len(blinks), "lip_basis": "shared" if shared else "fitted on this clip",
            "mouth_opening_mm_p95": float(np.percentile(mouth, 95) * 1000)}


def step_audio(ctx: StepContext) -> dict[str, Any]:
    cfg: PrepareConfig = ctx.params["config"]
    audio = load_audio(ctx.path("audio_source.wav"), SAMPLE_RATE)
    signals = np.load(ctx.path("signals.npz"))
    n = ctx.results["media"]["frames"]
    estimate = estimate_offset(signals["mouth_opening"], speech_energy_db(audio, n, cfg.fps, SAMPLE_RATE),
                               cfg.fps, cfg.offset)
    if cfg.av_offset == "auto":
        applied = estimate.applied_offset_s(cfg.offset)
    elif cfg.av_offset == "none":
        applied = 0.0
    else:
        applied = float(cfg.av_offset) / 1000.0
    aligned = shift_audio(audio, applied, SAMPLE_RATE)
    write_wav(ctx.path("audio.wav"), aligned, SAMPLE_RATE)
    features = audio_features(aligned, n, cfg.fps, cfg.audio)
    np.save(ctx.path("audio_features.npy"), features)
    cfg.audio.save(ctx.path("audio_features.json"))
    np.savez(ctx.path("av_offset.npz"), lags_s=estimate.lags_s, correlations=estimate.correlations)
    return {"av_offset_ms": round(estimate.offset_s * 1000, 1), "av_offset_applied_ms": round(applied * 1000, 1),
            "av_offset_confident": estimate.confident, "av_peak_correlation": round(estimate.peak_correlation, 3)}


def step_masks(ctx: StepContext) -> dict[str, Any]:
    from .masks import Region, region_labels

    frames = load_frames(ctx)
    template = load_face_template()
    landmarks = np.load(ctx.path("landmarks.npy"))
    person = ctx.cache.get("person")
    if person is None:  # resumed in a new process: read the mattes back
        person = np.stack([cv2.imread(str(frame_path(ctx.work_dir, i, "alpha")), cv2.IMREAD_UNCHANGED)
                           for i in range(len(frames))])
    (ctx.work_dir / "masks").mkdir(exist_ok=True)
    area = np.zeros(len(Region))
    labels_all = np.empty(frames.shape[:3], np.uint8)
    for i in range(len(frames)):
        labels = region_labels(person[i], landmarks[i, :, :2], template)
        labels_all[i] = labels
        cv2.imwrite(str(frame_path(ctx.work_dir, i, "masks")), labels, FAST_PNG)
        area += np.bincount(labels.ravel(), minlength=len(Region))[: len(Region)]
        ctx.progress(1, len(frames))
    ctx.cache["labels"] = labels_all
    area /= area.sum()
    return {"region_fraction": {r.name.lower(): round(float(area[r]), 4) for r in Region}}


def load_labels(ctx: StepContext) -> np.ndarray:
    if "labels" not in ctx.cache:
        n = ctx.results["media"]["frames"]
        ctx.cache["labels"] = np.stack([cv2.imread(str(frame_path(ctx.work_dir, i, "masks")), cv2.IMREAD_UNCHANGED)
                                        for i in range(n)])
    return ctx.cache["labels"]


def step_background(ctx: StepContext) -> dict[str, Any]:
    from .background import background_plate

    plate, unseen = background_plate(load_frames(ctx), load_labels(ctx))
    cv2.imwrite(str(ctx.path("background.png")), cv2.cvtColor(plate, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(ctx.path("background_unseen.png")), unseen.astype(np.uint8) * 255)
    return {"background_unseen_fraction": round(float(unseen.mean()), 4)}


def step_split(ctx: StepContext) -> dict[str, Any]:
    from .split import temporal_split

    cfg: PrepareConfig = ctx.params["config"]
    split = temporal_split(ctx.results["media"]["frames"], cfg.test_fraction)
    write_json_atomic(ctx.path("split.json"), split.to_json())
    return {"train_frames": len(split.train), "test_frames": len(split.test)}


def step_report(ctx: StepContext) -> dict[str, Any]:
    from .report import contact_sheet, signals_plot

    cfg: PrepareConfig = ctx.params["config"]
    contact_sheet(ctx.work_dir, load_frames(ctx), load_labels(ctx), cfg.fps)
    signals_plot(ctx.work_dir, cfg.fps)
    return {}


def step_summary(r: dict[str, dict[str, Any]], frames: int, fps: float, width: int, height: int) -> dict[str, Any]:
    """The summary.json figures that come from the shared steps (prepare and import-nerf)."""
    return {
        "frames": frames, "fps": fps, "duration_s": round(frames / fps, 3), "width": width, "height": height,
        "face_coverage": round(r["analyse"]["face_coverage"], 4),
        "valid_fraction": round(r["analyse"]["valid_fraction"], 4),
        "focal_px": round(r["pose"]["focal_px"], 2), "focal_source": r["pose"]["focal_source"],
        "reprojection_error_px": round(r["pose"]["reprojection_error_px"], 3),
        "yaw_range_deg": [round(v, 1) for v in r["pose"]["yaw_range_deg"]],
        "blinks": r["signals"]["blinks"],
        "av_offset_ms": r["audio"]["av_offset_ms"], "av_offset_applied_ms": r["audio"]["av_offset_applied_ms"],
        "av_offset_confident": r["audio"]["av_offset_confident"],
        "train_frames": r["split"]["train_frames"], "test_frames": r["split"]["test_frames"],
        "background_unseen_fraction": r["background"]["background_unseen_fraction"],
        "region_fraction": r["masks"]["region_fraction"],
    }


def build_steps(config: PrepareConfig) -> list[Step]:
    return [
        Step("locate", step_locate, 1, (config.locate_fps, config.min_duration_s, config.crop, config.landmarks),
             "find the face, choose the crop"),
        Step("media", step_media, 1, (config.fps, config.jpeg_quality, config.min_audio_coverage),
             "decode, crop and resample"),
        Step("analyse", step_analyse, 1, config.landmarks, "face landmarks and person matte"),
        Step("pose", step_pose, 1, config.pose, "head pose and camera"),
        Step("signals", step_signals, 1, config.signals, "eye, mouth and lip signals"),
        Step("audio", step_audio, 1, (config.av_offset, config.offset, config.audio), "audio offset and features"),
        Step("masks", step_masks, 1, None, "region masks"),  # after "analyse": needs its mattes
        Step("background", step_background, 1, None, "background plate"),
        Step("split", step_split, 1, config.test_fraction, "train/test split"),
        Step("report", step_report, 1, None, "contact sheet and plots"),
    ]


def prepare(video: Path, out: Path, audio: Path | None = None, config: PrepareConfig = PrepareConfig(),
            lip_basis: Path | None = None, reporter: Reporter | None = None, consent: Path | None = None,
            consent_key: bytes | None = None) -> dict[str, Any]:
    """Run (or resume) the preparation of `video` into the avatar folder `out`.

    `video` needs a consent record (lokitalk.provenance.consent) covering "prepare": `consent`, or
    by default VIDEO.consent.json beside it. Its block goes into avatar.json; `finish` runs on every
    call, so a new record always reaches the avatar even when every step is cached."""
    from ..provenance.consent import require_consent

    video, out = Path(video), Path(out)
    for path, what in ((video, "video"), (audio, "audio")):
        if path is not None and not Path(path).is_file():
            raise InputError(f"{path}: no such {what} file" if not Path(path).exists()
                             else f"{path} is a directory, not a {what} file")
    if lip_basis is not None and not Path(lip_basis).is_file():
        raise InputError(f"{lip_basis}: no such lip basis file")
    record = require_consent(video, "prepare", consent, key=consent_key)
    identity = file_identity(video) + (f"+{file_identity(Path(audio))}" if audio else "")
    identity += f"+{file_identity(Path(lip_basis))}" if lip_basis else ""
    start = time.perf_counter()
    runner = StepRunner(out, identity, kind="avatar", reporter=reporter)

    def finish(ctx: StepContext) -> dict[str, Any]:
        r = ctx.results
        n = r["media"]["frames"]
        elapsed = time.perf_counter() - start
        write_json_atomic(ctx.path("avatar.json"), {
            "format": AVATAR_FORMAT, "lokitalk_version": __version__, "source": r["locate"]["source"],
            "source_identity": identity, "crop": r["locate"]["crop"], "fps": config.fps,
            "config": repr(config), "consent": record.block()})
        return {
            "consent_id": record.consent_id,
            **step_summary(r, n, config.fps, r["media"]["size"], r["media"]["size"]),
            "source": r["locate"]["source"],
            "elapsed_s": round(elapsed, 2),
        }

    return runner.run(build_steps(config), {"config": config, "video": video, "audio": audio,
                                            "lip_basis": lip_basis}, finish)
