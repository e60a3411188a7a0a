"""The `lokitalk` command: thin wrappers that parse options and call the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import LokiTalkError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="LokiTalk: photoreal NeRF talking heads from a short consented video.")


def _check_preset_and_steps(preset: str, steps: int | None) -> None:
    if preset not in ("tiny", "fast", "full"):
        raise LokiTalkError(f"--preset must be tiny, fast or full, not {preset!r}")
    if steps is not None and steps <= 0:
        raise LokiTalkError("--steps must be positive")


@app.command()
def prepare(
    video: Path = typer.Argument(..., help="Talking-head video of one consenting person (any common format)."),
    out: Path = typer.Option(..., "--out", "-o", help="Avatar folder to create (or resume)."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Soundtrack, when the video has none "
                                         "or a better one exists (wav/mp3/m4a...)."),
    lip_basis: Optional[Path] = typer.Option(None, "--lip-basis", help="lip_basis.npz of another avatar: "
                                             "share its lip-motion basis across identities."),
    av_offset: str = typer.Option("auto", "--av-offset", help="'auto' (apply a confident estimate), "
                                  "'none', or the audio delay to remove in ms."),
    max_size: int = typer.Option(512, "--max-size", help="Largest side of the prepared frames (px)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    consent: Optional[Path] = typer.Option(None, "--consent", help="Consent record of the person shown "
                                           "(default: VIDEO.consent.json beside the video)."),
    consent_key: Optional[Path] = typer.Option(None, "--consent-key", help="Key file: also require the "
                                               "record's signature to verify with it."),
) -> None:
    """Turn a talking-head video into an avatar dataset (frames, landmarks, pose, masks, signals)."""
    from dataclasses import replace

    from .prepare.crop import CropConfig
    from .prepare.pipeline import PrepareConfig
    from .prepare.pipeline import prepare as run_prepare
    from .prepare.runner import Reporter

    if av_offset not in ("auto", "none"):
        try:
            float(av_offset)
        except ValueError:
            raise LokiTalkError(f"--av-offset must be 'auto', 'none' or a number of ms, not {av_offset!r}")
    if not 64 <= max_size <= 2048:
        raise LokiTalkError(f"--max-size must be between 64 and 2048 px, not {max_size}")
    config = replace(PrepareConfig(), av_offset=av_offset, crop=CropConfig(max_size=max_size))
    key = None
    if consent_key is not None:
        from .provenance.consent import read_key

        key = read_key(consent_key)
    summary = run_prepare(video, out, audio=audio, config=config, lip_basis=lip_basis,
                          reporter=Reporter(quiet=quiet), consent=consent, consent_key=key)
    keys = ["consent_id", "frames", "duration_s", "width", "face_coverage", "focal_px", "reprojection_error_px",
            "blinks", "av_offset_ms", "av_offset_applied_ms", "elapsed_s"]
    typer.echo(json.dumps({k: summary[k] for k in keys}))
    typer.echo(f"avatar ready: {out}  (look at {out / 'contact_sheet.png'} and {out / 'signals.png'})")


@app.command("make-sample")
def make_sample(
    out: Path = typer.Option(Path("sample/talking_astronaut.mp4"), "--out", "-o", help="Video file to write."),
    seconds: float = typer.Option(8.0, "--seconds", help="Duration."),
    size: int = typer.Option(256, "--size", help="Frame size in px."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a synthetic talking subject (public-domain portrait, synthetic speech) as an mp4."""
    from .synth.subject import make_talking_clip, write_clip

    if seconds <= 0 or size < 64:
        raise LokiTalkError("--seconds must be positive and --size at least 64")
    out.parent.mkdir(parents=True, exist_ok=True)
    clip = make_talking_clip(duration_s=seconds, size=size, seed=seed)
    write_clip(clip, out)
    typer.echo(f"wrote {out} ({len(clip.frames)} frames, {len(clip.blink_frames)} blinks)")


@app.command()
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="Folder for the sample and its avatar."),
) -> None:
    """The built-in default: make the synthetic sample, then prepare it."""
    from .provenance.consent import create_consent, default_consent_path, save_consent

    video = out / "talking_astronaut.mp4"
    if not video.exists():
        make_sample(out=video, seconds=8.0, size=256, seed=0)
    record_path = default_consent_path(video)
    if not record_path.exists():  # the sample is synthetic: nobody real is shown
        save_consent(create_consent(video, "synthetic subject (public-domain NASA portrait, animated)"),
                     record_path)
    prepare(video=video, out=out / "avatar", audio=None, lip_basis=None, av_offset="auto", max_size=512,
            quiet=False, consent=record_path, consent_key=None)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for everything the demo makes "
                             "(run again to resume: finished steps are kept)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: what fits ~10 min on "
                                        "a 2-core CPU; more on a GPU)."),
    preset: str = typer.Option("tiny", "--preset", help="Training preset: tiny (CPU), fast or full (GPU)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when there is one), cpu, cuda or cuda:N."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="Prior written by `lokitalk pretrain`: "
                                         "train from it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """The whole pipeline on a synthetic subject: prepare, train, speak a new sentence, evaluate, verify."""
    from dataclasses import replace

    from .demo import DemoConfig, run_demo
    from .demo.pipeline import default_steps

    _check_preset_and_steps(preset, steps)
    config = replace(DemoConfig(), preset=preset, device=device, prior=prior,
                     steps=steps if steps is not None else default_steps(preset, device))
    metrics = run_demo(out, config, quiet=quiet)
    check = metrics["steps"].get("check", {})
    typer.echo(json.dumps({"video": str(out / "spoken.mp4"), "report": metrics.get("report"),
                           "psnr": metrics["steps"].get("evaluate", {}).get("psnr"),
                           "lip_sync_r": check.get("lip_sync", {}).get("spoken_vs_truth", {}).get("r"),
                           "watermarked": metrics["steps"].get("verify", {}).get("watermarked"),
                           "total_s": metrics.get("total_s")}))


def _parse_schedule(text: str, prior: Optional[Path]) -> tuple[float, float, float]:
    """`--finetune-schedule`, checked before the model folder is created."""
    from .train.prior import finetune_schedule

    if prior is None:
        raise LokiTalkError("--finetune-schedule needs --prior: it says how a prior is fine-tuned")
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise LokiTalkError(f"--finetune-schedule takes FRACTION,NETS,GRID (e.g. 0.1,1,1), not {text!r}")
    finetune_schedule(0.0, 1, values)  # range check: a one-line error
    return values


@app.command()
def train(
    avatar: Path = typer.Argument(..., help="Avatar folder written by `lokitalk prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to create (or continue with --resume)."),
    preset: str = typer.Option("tiny", "--preset", help="tiny (6000 steps, CPU minutes), fast (3000), or full "
                               "(30000, GPU quality)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override the preset's number of steps."),
    deformation: str = typer.Option("region", "--deformation", help="region (LokiTalk) or global "
                                    "(the ER-NeRF-like baseline)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the folder's last checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="Prior written by `lokitalk pretrain`: start "
                                         "from it and fine-tune (its model size replaces the preset's)."),
    train_seconds: Optional[float] = typer.Option(None, "--train-seconds", help="Train on the first N s of "
                                                  "the training frames only (test frames unchanged)."),
    lip_input: str = typer.Option("unit", "--lip-input", help="unit: the lip feature scaled to unit spread "
                                  "inside the model (default); raw: as prepared (models before 2026-11-25)."),
    eye_input: Optional[str] = typer.Option(None, "--eye-input", help="unit: the eye ratio centred and scaled "
                                            "to unit spread inside the model; raw: as prepared (default: the "
                                            "preset's, unit for fast/full, raw for tiny)."),
    torso_motion: Optional[str] = typer.Option(None, "--torso-motion", help="rigid: the torso stage blends neck "
                                               "and torso toward a body held still in front of the camera; "
                                               "learned: its net alone moves them (default: the preset's, rigid "
                                               "for fast and full, learned for tiny; with --prior, the prior's)."),
    refine_poses: Optional[bool] = typer.Option(None, "--refine-poses/--no-refine-poses", help="Learn a pose "
                                                "correction for every training frame with the model; the model "
                                                "keeps their pose-dependent part and applies it to every frame it "
                                                "renders (default: the preset's, on for fast and full, off for "
                                                "tiny; with --prior too)."),
    refine_body: Optional[bool] = typer.Option(None, "--refine-body/--no-refine-body", help="Learn a small rigid "
                                               "correction of the body (breathing, shrugs) for every training "
                                               "frame, where the rigid torso holds it still; rendered frames keep "
                                               "the mean body (default: the preset's; needs a rigid torso)."),
    prune: Optional[float] = typer.Option(None, "--prune", metavar="THRESHOLD", help="Training evaluates the "
                                          "field with gradients only at samples whose opacity and the light "
                                          "reaching them exceed this (a density-only pass finds them; 0: every "
                                          "sample, exact; default: the preset's, 1e-4)."),
    box_sampling: Optional[bool] = typer.Option(None, "--box-sampling/--no-box-sampling", help="Spread each "
                                                "ray's samples over its part inside the field's box (about twice as "
                                                "dense on the head, about twice the field evaluations; the model "
                                                "renders the way it trained; default: the preset's)."),
    fine_samples: Optional[int] = typer.Option(None, "--fine-samples", metavar="N", help="A proposal stage: "
                                               "the density alone at the coarse samples, then the full field at N "
                                               "samples drawn where their weight is, crowded onto the surface (0: "
                                               "off; the model renders the way it trained; default: the preset's, "
                                               "8 in fast and full, off in tiny)."),
    fine_padding: Optional[float] = typer.Option(None, "--fine-padding", metavar="SHARE", help="With "
                                                 "--fine-samples: the share of them spread evenly over the ray "
                                                 "instead (default: the preset's, 0.1)."),
    fine_with_coarse: Optional[bool] = typer.Option(None, "--fine-with-coarse/--fine-only", help="With "
                                                    "--fine-samples: also evaluate the coarse samples with some "
                                                    "opacity in front of the surface, so that faint density gets "
                                                    "its gradient; training only, rendering evaluates the fine "
                                                    "samples alone (default: the preset's, on in fast and full)."),
    distortion: Optional[float] = typer.Option(None, "--distortion", metavar="WEIGHT", help="Weight of the "
                                               "distortion loss, which gathers each ray's rendered weight into a "
                                               "thin surface (0: off; default: the preset's)."),
    face_depth: Optional[float] = typer.Option(None, "--face-depth", metavar="WEIGHT", help="Weight of the face "
                                               "depth loss: rays through the avatar's fitted face points are pulled "
                                               "to stop on them (0: off; default: the preset's)."),
    lower_face_depth: bool = typer.Option(False, "--lower-face-depth/--no-lower-face-depth", help="With face depth: "
                                          "every frame's lips, chin and jaw landmarks too, not only the rigid "
                                          "face points."),
    finetune_schedule: Optional[str] = typer.Option(None, "--finetune-schedule", metavar="FRACTION,NETS,GRID",
                                                    help="With --prior: the share of steps where only the "
                                                    "person's parts learn, then the shared nets' and grid's "
                                                    "learning-rate scales (default: chosen by seconds of video)."),
    fine_deformation_seconds: float = typer.Option(20.0, "--fine-deformation-seconds",
                                                   help="With at least this many seconds of training video the "
                                                   "deformation gets a finer position band (deeper blinks); "
                                                   "inf: never."),
) -> None:
    """Train the talking head of one person on the avatar's training frames."""
    from .train.config import preset as make_preset
    from .train.config import with_steps, with_torso_motion
    from .train.trainer import train as run_train

    if deformation not in ("region", "global"):
        raise LokiTalkError(f"--deformation must be region or global, not {deformation!r}")
    if lip_input not in ("unit", "raw"):
        raise LokiTalkError(f"--lip-input must be unit or raw, not {lip_input!r}")
    if eye_input not in (None, "unit", "raw"):
        raise LokiTalkError(f"--eye-input must be unit or raw, not {eye_input!r}")
    _check_preset_and_steps(preset, steps)
    from dataclasses import replace

    config = replace(with_steps(make_preset(preset, deformation), steps), lip_input=lip_input)
    if eye_input is not None:
        config = replace(config, eye_input=eye_input)
    if refine_poses is not None:
        config = replace(config, pose_refinement=refine_poses)
    if refine_body is not None:
        config = replace(config, body_refinement=refine_body)
    if prune is not None:
        if not 0 <= prune < 1:  # also NaN
            raise LokiTalkError("--prune must be at least 0 and below 1")
        config = replace(config, prune=prune)
    if box_sampling is not None:
        config = replace(config, box_sampling=box_sampling)
    config = _with_sampler(config, fine_samples, fine_padding, fine_with_coarse)
    if distortion is not None:
        if not distortion >= 0:  # also NaN
            raise LokiTalkError("--distortion must be 0 or more")
        config = replace(config, distortion_weight=distortion)
    if face_depth is not None:
        if not face_depth >= 0:  # also NaN
            raise LokiTalkError("--face-depth must be 0 or more")
        config = replace(config, face_depth_weight=face_depth)
    if lower_face_depth:
        if config.face_depth_weight <= 0:
            raise LokiTalkError("--lower-face-depth needs face depth on (--face-depth WEIGHT > 0, or a preset with it)")
        config = replace(config, face_depth_lower_face=True)
    try:
        config = with_torso_motion(config, torso_motion)
    except ValueError as error:
        raise LokiTalkError(f"--torso-motion: {error}") from None
    if torso_motion is not None and prior is not None:
        _check_prior_torso_motion(prior, torso_motion)
    if train_seconds is not None:
        if train_seconds <= 0:
            raise LokiTalkError("--train-seconds must be positive")
        config = replace(config, train_seconds=train_seconds)
    if finetune_schedule is not None:
        config = replace(config, finetune_schedule=_parse_schedule(finetune_schedule, prior))
    if not fine_deformation_seconds >= 0:  # also NaN
        raise LokiTalkError("--fine-deformation-seconds must be 0 or more (inf: never)")
    # inf is kept as None (never): model.json stays strict JSON
    never = fine_deformation_seconds == float("inf")
    config = replace(config, fine_deformation_seconds=None if never else fine_deformation_seconds)
    summary = run_train(avatar, out, config, device=device, resume=resume, show_progress=not quiet, prior=prior)
    typer.echo(json.dumps(summary))


def _with_sampler(config, fine_samples: Optional[int], fine_padding: Optional[float],
                  fine_with_coarse: Optional[bool]):
    """The proposal-stage options of `train` and `pretrain` applied to a TrainConfig (None: the preset's)."""
    from dataclasses import replace

    if fine_samples is not None:
        if fine_samples < 0:
            raise LokiTalkError("--fine-samples must be 0 (off) or more")
        config = replace(config, fine_samples=fine_samples)
    if fine_padding is not None:
        if not 0 <= fine_padding <= 1:  # also NaN
            raise LokiTalkError("--fine-padding must be between 0 and 1")
        config = replace(config, fine_padding=fine_padding)
    if fine_with_coarse is not None:
        config = replace(config, fine_with_coarse=fine_with_coarse)
    return config


def _check_prior_torso_motion(prior: Path, torso_motion: str) -> None:
    """A fine-tune keeps its prior's torso stage: asking for another is an error, not ignored."""
    from .train.prior import load_prior_config

    motion = load_prior_config(prior).deformation.torso_motion
    if motion != torso_motion:
        raise LokiTalkError(f"--torso-motion {torso_motion}: the prior {prior} has a {motion} torso stage, and a "
                            f"fine-tune keeps it (pretrain with --torso-motion {torso_motion} for another)")


@app.command()
def pretrain(
    avatars: list[Path] = typer.Argument(..., help="Avatar folders of the identities to learn from."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the run; the prior is written to OUT/prior."),
    preset: str = typer.Option("tiny", "--preset", help="tiny, fast or full: model size and step budget."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Steps (default: the preset's, raised so that "
                                        "each identity is rendered about 360 times)."),
    identities_per_step: int = typer.Option(0, "--identities-per-step", help="Identities rendered per step, "
                                            "a multiple of the number of ranks (0: one per rank)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (under torchrun: one GPU a rank)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's last checkpoint."),
    lip_scaling: str = typer.Option("component", "--lip-scaling", help="The shared lip space: 'component' "
                                    "scales each direction to unit spread, 'overall' all by one factor."),
    fine_samples: Optional[int] = typer.Option(None, "--fine-samples", metavar="N", help="As in train: the "
                                               "proposal stage's fine samples per ray (0: off; default: the "
                                               "preset's, 8 in fast and full, off in tiny)."),
    fine_with_coarse: Optional[bool] = typer.Option(None, "--fine-with-coarse/--fine-only", help="As in train: "
                                                    "also evaluate the coarse samples in front of the surface "
                                                    "(default: the preset's)."),
    torso_motion: str = typer.Option("learned", "--torso-motion", help="The prior's torso stage: learned (its "
                                     "net moves neck and torso), or rigid (each identity's body held still in "
                                     "front of the camera at its own mean pose, the net adding a residual)."),
    face_alignment: bool = typer.Option(False, "--face-alignment/--no-face-alignment", help="Move each "
                                        "person's mouth, chin and jaw onto the pretraining people's mean face "
                                        "before the shared nets read them (a new person too, when fine-tuned)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Pretrain a multi-identity prior (one process, or many under torchrun: DDP, NCCL/gloo)."""
    from .train.config import preset as make_preset
    from .train.config import with_steps
    from .train.pretrain import PretrainConfig, default_pretrain_steps
    from .train.pretrain import pretrain as run_pretrain
    from .model.deformation import TORSO_MOTIONS
    from .model.identity import IdentityConfig
    from .train.prior import LIP_SCALINGS

    _check_preset_and_steps(preset, steps)
    if not avatars:
        raise LokiTalkError("pretrain needs at least one avatar folder")
    if lip_scaling not in LIP_SCALINGS:  # before OUT is created
        raise LokiTalkError(f"--lip-scaling must be one of {', '.join(LIP_SCALINGS)}, not {lip_scaling!r}")
    if torso_motion not in TORSO_MOTIONS:
        raise LokiTalkError(f"--torso-motion must be one of {', '.join(TORSO_MOTIONS)}, not {torso_motion!r}")
    if steps is None:  # the same avatars give the same default when the run is resumed
        import os

        per_step = identities_per_step or int(os.environ.get("WORLD_SIZE", "1"))
        steps = default_pretrain_steps(make_preset(preset).steps, len(avatars), per_step)
    train_config = _with_sampler(with_steps(make_preset(preset), steps), fine_samples, None, fine_with_coarse)
    config = PretrainConfig(train=train_config, identities_per_step=identities_per_step, lip_scaling=lip_scaling,
                            torso_motion=torso_motion, identity=IdentityConfig(face_alignment=face_alignment))
    summary = run_pretrain(avatars, out, config, device=device, resume=resume, show_progress=not quiet)
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        typer.echo(json.dumps(summary))


SIGN_CERT_HELP = ("C2PA: sign the output with this PEM certificate chain (signer first; default "
                  "$LOKITALK_C2PA_CERT). Needs c2pa-python.")
SIGN_KEY_HELP = "C2PA: the signer's private key, PEM (default $LOKITALK_C2PA_KEY)."


@app.command()
def render(
    model: Path = typer.Argument(..., help="Model folder written by `lokitalk train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Video file to write (mp4)."),
    split: str = typer.Option("test", "--split", help="test or train: re-enact those frames from their own "
                              "driving signals."),
    device: str = typer.Option("cpu", "--device"),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Render only the first N frames."),
    sign_cert: Optional[Path] = typer.Option(None, "--sign-cert", help=SIGN_CERT_HELP),
    sign_key: Optional[Path] = typer.Option(None, "--sign-key", help=SIGN_KEY_HELP),
) -> None:
    """Re-enact frames of the avatar from their own pose, eye ratio and lip feature, with audio."""
    from .data.avatar import load_avatar
    from .evaluate.run import render_test
    from .media.video_writer import write_video
    from .render.loading import load_trained

    if split not in ("test", "train"):
        raise LokiTalkError(f"--split must be test or train, not {split!r}")
    from .provenance.c2pa_sign import load_signer, sign_output

    signer = load_signer(sign_cert, sign_key)  # before any work: a bad cert/key stops here
    trained = load_trained(model, device)
    avatar_data = load_avatar(trained.avatar_dir)
    frames = avatar_data.split.test if split == "test" else avatar_data.split.train
    if max_frames is not None:
        frames = frames[:max_frames]
    from .provenance.consent import check_block
    from .provenance.stamp import manifest, manifest_tags, next_serial, stamp_frames

    check_block(trained.meta.get("consent"), "render", f"model {model}")
    rendered, fps = render_test(trained, avatar_data, frames)
    audio = avatar_data.audio_for_frames(int(frames[0]), int(frames[-1]))
    serial = next_serial(model)
    write_video(out, stamp_frames(iter(rendered), trained.meta, serial), avatar_data.fps, audio=audio,
                sample_rate=avatar_data.audio_spec.sample_rate,
                metadata=manifest_tags(manifest(trained.meta, serial, "render")))
    signed = sign_output(out, trained.meta, serial, signer, "render")
    typer.echo(json.dumps({"frames": int(len(frames)), "render_fps": round(fps, 2), "out": str(out), "c2pa": signed}))


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="Model folder written by `lokitalk train`."),
    device: str = typer.Option("cpu", "--device"),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Evaluate N evenly spaced test frames."),
    sign_cert: Optional[Path] = typer.Option(None, "--sign-cert", help=SIGN_CERT_HELP),
    sign_key: Optional[Path] = typer.Option(None, "--sign-key", help=SIGN_KEY_HELP),
    video: Optional[Path] = typer.Option(None, "--video", help="Instead: the lip-sync report of this rendered "
                                         "video (audio-video offset, correlation, blinks, mouth amplitude)."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="With --video: the speech to measure against "
                                         "(default: the video's own soundtrack)."),
    against_test: bool = typer.Option(False, "--against-test", help="With --video: frame k re-enacts test frame "
                                      "k (speak --head-motion reference): also LMD against the real frames."),
) -> None:
    """Metrics on the held-out test frames, beside the mean-image and nearest-frame baselines."""
    from .evaluate.run import evaluate as run_evaluate

    if video is not None:  # lip-sync report of a rendered speech video (lokitalk/evaluate/sync.py)
        from .evaluate.sync import evaluate_video

        typer.echo(json.dumps(evaluate_video(model, video, audio, against_test), indent=2))
        typer.echo(f"written: {model / 'eval' / f'sync_{video.stem}.json'}")
        return
    if audio is not None or against_test:
        raise LokiTalkError("--audio and --against-test go with --video")
    from .provenance.c2pa_sign import load_signer

    signer = load_signer(sign_cert, sign_key)  # side_by_side.mp4 is C2PA-signed when given
    result = run_evaluate(model, max_frames=max_frames, device=device, signer=signer)
    typer.echo(json.dumps(result, indent=2))
    typer.echo(f"written: {model / 'eval' / 'metrics.json'}, side_by_side.mp4, worst_frames.png")


@app.command()
def speak(
    model: Path = typer.Argument(..., help="Model folder written by `lokitalk train`."),
    audio: Path = typer.Option(..., "--audio", "-a", help="Speech to say (wav/mp3/m4a/flac/ogg/mp4..., any rate)."),
    out: Path = typer.Option(..., "--out", "-o", help="Video file to write (mp4, 25 fps, with the speech)."),
    head_motion: str = typer.Option("replay", "--head-motion", help="replay (the person's own motion, re-cut "
                                    "without loops), still, or reference (the test split's real poses)."),
    no_adapt: bool = typer.Option(False, "--no-adapt", help="Use the shared Audio2Motion as is (no "
                                  "adaptation to this person's clip)."),
    no_blinks: bool = typer.Option(False, "--no-blinks", help="Eyes stay open."),
    seed: int = typer.Option(0, "--seed", help="Seed of blink times and head-motion segments."),
    lip_gain: Optional[float] = typer.Option(None, "--lip-gain", help="Scale the lip motion by this (default: "
                                             "the gain `calibrate-lips` measured for the model, else 1)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    sign_cert: Optional[Path] = typer.Option(None, "--sign-cert", help=SIGN_CERT_HELP),
    sign_key: Optional[Path] = typer.Option(None, "--sign-key", help=SIGN_KEY_HELP),
) -> None:
    """Say any speech with a trained avatar: a lip-synced, blinking, moving, watermarked mp4."""
    from .speak import SpeakConfig
    from .speak import speak as run_speak

    config = SpeakConfig(head_motion=head_motion, adapt=not no_adapt, blinks=not no_blinks, seed=seed,
                         lip_gain=lip_gain, sign_cert=sign_cert, sign_key=sign_key)
    typer.echo(json.dumps(run_speak(model, audio, out, config, device=device, show_progress=not quiet)))


@app.command()
def stream(
    model: Path = typer.Argument(..., help="Model folder written by `lokitalk train`."),
    audio: str = typer.Option(..., "--audio", "-a", help="Speech as it arrives: '-' reads raw 16-bit mono PCM "
                              "from stdin (at --rate), else any audio file, read piece by piece."),
    out: str = typer.Option(..., "--out", "-o", help="Fragmented mp4 to write as frames are made; '-' writes "
                            "it to stdout (e.g. | ffplay -)."),
    rate: int = typer.Option(16000, "--rate", help="Sample rate of the raw PCM on stdin."),
    realtime: bool = typer.Option(False, "--realtime", help="Read a file at the pace it would be spoken "
                                  "(stands in for a live source; latency is then meaningful)."),
    chunk_ms: float = typer.Option(20.0, "--chunk-ms", help="Audio piece size in ms."),
    max_latency: Optional[float] = typer.Option(None, "--max-latency", help="Seconds: a frame later than this "
                                                "after its audio is not rendered, the last one is shown again "
                                                "(keeps a slow machine live). Default: render every frame."),
    head_motion: str = typer.Option("replay", "--head-motion", help="replay (the person's own motion, re-cut "
                                    "without loops) or still."),
    no_adapt: bool = typer.Option(False, "--no-adapt", help="Use the shared Audio2Motion as is."),
    no_blinks: bool = typer.Option(False, "--no-blinks", help="Eyes stay open."),
    seed: int = typer.Option(0, "--seed", help="Seed of blink times and head-motion segments."),
    lip_gain: Optional[float] = typer.Option(None, "--lip-gain", help="Scale the lip motion by this (default: "
                                             "the gain `calibrate-lips` measured for the model, else 1)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line."),
) -> None:
    """Say speech while it arrives (a live digital human): frames out ~0.3 s after their audio."""
    from .speak import SpeakConfig
    from .speak.stream import paced, rechunk, stream_speak

    if not 1.0 <= chunk_ms <= 1000.0:
        raise LokiTalkError("--chunk-ms must be between 1 and 1000")
    if max_latency is not None and not max_latency > 0:
        raise LokiTalkError("--max-latency must be positive (seconds)")
    if audio == "-" and realtime:
        raise LokiTalkError("--realtime paces a file; stdin arrives at its own pace")
    config = SpeakConfig(head_motion=head_motion, adapt=not no_adapt, blinks=not no_blinks, seed=seed,
                         lip_gain=lip_gain)
    from .speak.audio_input import SAMPLE_RATE

    size = max(1, round(chunk_ms / 1e3 * SAMPLE_RATE))
    if audio == "-":
        from .media.audio import iter_raw_pcm

        if rate < 4000:
            raise LokiTalkError("--rate must be at least 4000")
        pieces = rechunk(iter_raw_pcm(sys.stdin.buffer, rate, SAMPLE_RATE, chunk_ms / 1e3), size)
    else:
        from .media.audio import iter_audio
        from .media.files import check_file

        check_file(Path(audio))
        pieces = rechunk(iter_audio(Path(audio), SAMPLE_RATE), size)
        pieces = paced(pieces, SAMPLE_RATE) if realtime else pieces
    target = sys.stdout.buffer if out == "-" else Path(out)
    try:
        summary = stream_speak(model, pieces, target, config, device=device, show_progress=not quiet,
                               max_latency_s=max_latency)
    except KeyboardInterrupt:  # not resumable: say what became of the output
        kept = "" if out == "-" else f"; {out} was not written (end a stream by closing its input)"
        typer.echo(f"interrupted: the stream stopped{kept}", err=True)
        sys.exit(130)
    typer.echo(json.dumps(summary), err=out == "-")


@app.command("calibrate-lips")
def calibrate_lips(
    model: Path = typer.Argument(..., help="Model folder written by `lokitalk train`."),
    frames: int = typer.Option(40, "--frames", help="Training frames rendered per candidate gain."),
    drive: str = typer.Option("speech", "--drive", help="speech: drive the frames with the lips `speak` plans "
                              "from their own audio (what speak renders); real: with their prepared lip features."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Measure how much the model damps lip motion on its training frames; `speak` then makes up for it."""
    from .speak.lip_gain import LipGainConfig, calibrate_lip_gain
    from .train.trainer import choose_device

    if frames < 3:
        raise LokiTalkError("--frames must be at least 3")
    typer.echo(json.dumps(calibrate_lip_gain(model, LipGainConfig(frames=frames, drive=drive),
                                             str(choose_device(device)))))


@app.command("import-nerf")
def import_nerf_command(
    dataset: Path = typer.Argument(..., help="Dataset folder in the AD-NeRF / RAD-NeRF / ER-NeRF layout "
                                   "(transforms_train.json, transforms_val.json, ori_imgs/, aud.wav, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Avatar folder to create (or resume)."),
    lip_basis: Optional[Path] = typer.Option(None, "--lip-basis", help="lip_basis.npz of another avatar: "
                                             "share its lip-motion basis across identities."),
    no_extras: bool = typer.Option(False, "--no-extras", help="Ignore lokitalk_extra/ and derive "
                                   "everything from the dataset itself."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    consent: Optional[Path] = typer.Option(None, "--consent", help="Consent record bound to the dataset's "
                                           "aud.wav, its own recording of the person (default: "
                                           "DATASET/aud.wav.consent.json)."),
) -> None:
    """Turn a NeRF talking-head dataset into a LokiTalk avatar (docs/NERF_FORMAT.md)."""
    from .interop.import_nerf import ImportConfig, import_nerf
    from .prepare.runner import Reporter

    summary = import_nerf(dataset, out, ImportConfig(use_extras=not no_extras), lip_basis=lip_basis,
                          reporter=Reporter(quiet=quiet), consent=consent)
    keys = ["consent_id", "frames", "width", "height", "focal_px", "reprojection_error_px", "blinks", "train_frames",
            "test_frames", "imported_from"]
    typer.echo(json.dumps({k: summary[k] for k in keys}))
    typer.echo(f"avatar ready: {out}  (look at {out / 'contact_sheet.png'} and {out / 'signals.png'})")


@app.command("export-nerf")
def export_nerf_command(
    avatar: Path = typer.Argument(..., help="Avatar folder written by prepare or import-nerf."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to create (must not exist)."),
    no_extras: bool = typer.Option(False, "--no-extras", help="Leave out lokitalk_extra/ (then a "
                                   "re-import derives landmarks and signals instead of restoring them)."),
) -> None:
    """Write an avatar as an AD-NeRF / RAD-NeRF / ER-NeRF dataset (docs/NERF_FORMAT.md)."""
    from .interop.export_nerf import ExportConfig, export_nerf

    report = export_nerf(avatar, out, ExportConfig(extras=not no_extras))
    typer.echo(json.dumps(report))
    typer.echo(f"dataset ready: {out}")


@app.command()
def verify(
    video: Path = typer.Argument(..., help="Any video file."),
    max_frames: int = typer.Option(100, "--max-frames", help="Frames spread over the video to examine."),
    trust_anchors: Optional[Path] = typer.Option(None, "--trust-anchors", help="PEM root certificates: "
                                                 "report C2PA credentials as trusted when their signer "
                                                 "chains to one."),
) -> None:
    """Say whether a video carries a LokiTalk watermark, its payload, manifest and C2PA credentials."""
    from .provenance import detect_video

    if max_frames < 1:
        raise LokiTalkError("--max-frames must be at least 1")
    from .provenance.stamp import read_manifest

    detection = detect_video(video, max_frames=max_frames)
    typer.echo(detection.summary())
    payload = detection.payload
    found = read_manifest(video)
    if found is not None:
        typer.echo(f"manifest: {found.get('statement', '?')} (consent {found.get('consent', {}).get('consent_id')})")
    # the watermark survives re-encoding, the metadata often does not; when both exist they must agree
    agree = None
    if found is not None and payload is not None and "watermark" in found:
        mark = found["watermark"]
        agree = (mark.get("model_tag"), mark.get("consent_tag"), mark.get("serial")) == (
            payload.model_id, payload.consent_id, payload.serial)
    from .provenance.c2pa_sign import cross_check, describe, read_c2pa

    credentials = read_c2pa(video, trust_anchors)
    checks = cross_check(credentials, found, payload)
    typer.echo(describe(credentials, checks))
    typer.echo(json.dumps({"watermarked": detection.watermarked, "score": round(detection.score, 2),
                           "bit_accuracy": round(detection.bit_accuracy, 3), "frames_used": detection.frames_used,
                           "payload": None if payload is None else str(payload), "manifest": found,
                           "manifest_matches_watermark": agree, "c2pa": credentials, **checks}))


consent_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Consent records: the person shown agreed to this video's use.")
app.add_typer(consent_app, name="consent")


@consent_app.command("create")
def consent_create(
    subject: str = typer.Option(..., "--subject", help="Name of the person shown, who consents."),
    video: Path = typer.Option(..., "--video", help="The exact source video (bound by its content hash)."),
    scope: str = typer.Option("prepare,train,render,speak", "--scope", help="Comma-separated uses consented to."),
    expires: Optional[str] = typer.Option(None, "--expires", help="Last day the consent holds (YYYY-MM-DD)."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key file: sign the record (HMAC-SHA256)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Record to write (default: VIDEO.consent.json)."),
) -> None:
    """Write a consent record bound to VIDEO, which prepare and train require."""
    from .provenance.consent import create_consent, default_consent_path, read_key, save_consent

    record = create_consent(video, subject, scope, expires, read_key(key) if key is not None else None)
    path = save_consent(record, out if out is not None else default_consent_path(video))
    typer.echo(json.dumps(record.block()))
    typer.echo(f"consent record written: {path}")


@consent_app.command("show")
def consent_show(record: Path = typer.Argument(..., help="A consent record file.")) -> None:
    """Print a consent record."""
    from .provenance.consent import load_consent

    typer.echo(json.dumps(load_consent(record).to_json(), indent=2))


provenance_app = typer.Typer(add_completion=False, no_args_is_help=True,
                             help="C2PA content credentials: test certificates.")
app.add_typer(provenance_app, name="provenance")


@provenance_app.command("keygen")
def provenance_keygen(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for ca.pem, chain.pem and signer.key."),
    days: int = typer.Option(365, "--days", help="Validity of the certificates."),
) -> None:
    """FOR TESTING ONLY: a throw-away CA and C2PA signer certificate (real deployments supply their own)."""
    from .provenance.c2pa_sign import make_test_chain

    if days < 1:
        raise LokiTalkError("--days must be at least 1")
    if out.exists() and any((out / name).exists() for name in ("ca.pem", "chain.pem", "signer.key")):
        raise LokiTalkError(f"{out} already holds a certificate or key: choose another folder")
    paths = make_test_chain(out, days)
    typer.echo(json.dumps({k: str(v) for k, v in paths.items()}))
    typer.echo(f"TEST certificates (not trusted by anyone): sign with --sign-cert {paths['chain']} --sign-key "
               f"{paths['key']}; verify with --trust-anchors {paths['ca']}")


def main() -> None:
    try:
        app(standalone_mode=True)
    except LokiTalkError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command again to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
