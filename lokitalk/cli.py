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
    summary = run_prepare(video, out, audio=audio, config=config, lip_basis=lip_basis,
                          reporter=Reporter(quiet=quiet))
    keys = ["frames", "duration_s", "width", "face_coverage", "focal_px", "reprojection_error_px",
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
    video = out / "talking_astronaut.mp4"
    if not video.exists():
        make_sample(out=video, seconds=8.0, size=256, seed=0)
    prepare(video=video, out=out / "avatar", audio=None, lip_basis=None, av_offset="auto", max_size=512,
            quiet=False)


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
