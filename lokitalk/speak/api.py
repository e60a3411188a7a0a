"""`speak`: a trained model and any speech in, a lip-synced, stamped talking video out."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .audio_input import SAMPLE_RATE, frames_for, load_speech
from .config import HEAD_MOTION_MODES, SpeakConfig
from .drive import plan_drive
from .render import rendered_frames


def check_output(out: Path) -> None:
    if out.is_dir():
        raise InputError(f"{out} is a directory: give the video file to write, e.g. {out / 'speech.mp4'}")
    if out.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise InputError(f"{out}: the output is an MP4 video, name it .mp4")


def check_config(config: SpeakConfig) -> None:
    if config.head_motion not in HEAD_MOTION_MODES:
        raise InputError(f"head motion must be one of {', '.join(HEAD_MOTION_MODES)}, not {config.head_motion!r}")
    lo, hi = config.segment_s
    if not 0 < lo <= hi:
        raise InputError(f"segment lengths must satisfy 0 < min <= max, not {config.segment_s}")
    if config.chunk_frames < 1:
        raise InputError("chunk_frames must be at least 1")
    if config.lip_gain is not None and not 0 < config.lip_gain <= 4:
        raise InputError(f"lip gain must be in (0, 4], not {config.lip_gain}")


def load_speaker(model_dir: Path, device: str = "auto"):
    """(trained model, its avatar, torch device) for speaking, or an InputError: the model's
    consent must cover `speak`, its avatar's audio features must be at 16 kHz."""
    from ..data.avatar import load_avatar
    from ..provenance.consent import check_block
    from ..render.loading import load_trained
    from ..train.trainer import choose_device

    dev = choose_device(device)
    trained = load_trained(model_dir, dev)
    check_block(trained.meta.get("consent"), "speak", f"model {model_dir}")
    avatar = load_avatar(trained.avatar_dir)
    if avatar.audio_spec.sample_rate != SAMPLE_RATE:
        raise InputError(f"{avatar.root}: audio features at {avatar.audio_spec.sample_rate} Hz, speech is read "
                         f"at {SAMPLE_RATE} Hz")
    return trained, avatar, dev


def speak(model_dir: Path, audio: Path, out: Path, config: SpeakConfig | None = None, device: str = "auto",
          show_progress: bool = True) -> dict:
    """Render MODEL_DIR's person saying AUDIO into OUT (25 fps H.264 + AAC of the same speech,
    every frame watermarked, the MP4 manifest declaring it AI-generated). Returns a summary.
    Bad input raises InputError before anything is written; OUT appears only once complete."""
    from ..media.video_writer import write_video
    from ..provenance.stamp import manifest, manifest_tags, next_serial, stamp_frames

    started = time.perf_counter()
    config = config or SpeakConfig()
    model_dir, out = Path(model_dir), Path(out)
    check_config(config)
    check_output(out)
    from ..provenance.c2pa_sign import load_signer, sign_output

    signer = load_signer(config.sign_cert, config.sign_key)  # a bad certificate stops here, before any work
    speech = load_speech(audio, config.min_audio_s, SAMPLE_RATE)
    trained, avatar, dev = load_speaker(model_dir, device)
    num_frames, speech = frames_for(speech, avatar.fps, SAMPLE_RATE)
    from .lip_gain import load_lip_gain

    lip_gain = load_lip_gain(model_dir) if config.lip_gain is None else float(config.lip_gain)
    drive = plan_drive(avatar, speech, num_frames, config, device="cpu", lip_gain=lip_gain)
    planned = time.perf_counter()

    serial = next_serial(model_dir)
    meta = manifest(trained.meta, serial, "speak")
    frames = rendered_frames(trained, avatar, drive, show_progress)
    write_video(out, stamp_frames(frames, trained.meta, serial), avatar.fps, audio=speech, sample_rate=SAMPLE_RATE,
                crf=config.crf, metadata=manifest_tags(meta))
    signed = sign_output(out, trained.meta, serial, signer, "speak")
    elapsed = time.perf_counter() - started
    camera = avatar.camera.scaled(trained.image_scale)
    return {
        "out": str(out), "frames": int(num_frames), "fps": float(avatar.fps),
        "duration_s": round(num_frames / avatar.fps, 3), "audio_s": round(len(speech) / SAMPLE_RATE, 3),
        "size": [camera.width, camera.height], "serial": serial, "c2pa": signed,
        "consent_id": (trained.meta.get("consent") or {}).get("consent_id"),
        "head_motion": config.head_motion, "head_segments": len(drive.motion.segments), "lip_gain": lip_gain,
        "blinks": len(drive.blinks),
        "blink_rate_per_min": round(60.0 * len(drive.blinks) / (num_frames / avatar.fps), 1),
        "lips": drive.lips.source, "amplitude_gain": round(float(drive.lips.style.gain), 3),
        "predicted_opening_std_mm": round(float(np.std(drive.opening) * 1e3), 3),
        "device": str(dev), "plan_s": round(planned - started, 2), "elapsed_s": round(elapsed, 2),
        "render_fps": round(num_frames / max(elapsed - (planned - started), 1e-9), 2),
    }
