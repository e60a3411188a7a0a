"""Opening media files for reading, with one-line errors, and naming files written in place.

Shared by video and audio I/O: every failure to open becomes an InputError that says what is
wrong with the file (missing, empty, not media, truncated), and outputs are written under a
hidden temporary name (`partial_path`) and renamed when complete.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import av

from lokitalk.errors import InputError

# Magic bytes of containers we could plausibly be handed. A file that starts like one of these but
# that FFmpeg cannot open is reported as damaged rather than as "not a video".
_MEDIA_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # mp4 / mov / m4a
    (4, b"moov"),  # old QuickTime
    (4, b"mdat"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI / WAV
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"ID3"),  # mp3 with tag
    (0, b"fLaC"),
)


def check_file(path: Path) -> None:
    """InputError unless `path` is an existing, non-empty regular file."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty")


def _looks_like_media(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[at : at + len(magic)] == magic for at, magic in _MEDIA_MAGIC)


def error_reason(err: BaseException) -> str:
    # FFmpegError's str() repeats errno and filename; strerror is the readable part.
    return str(getattr(err, "strerror", None) or err).strip().rstrip(".")


def open_media(path: Path, what: str = "a video file") -> av.container.InputContainer:
    """Open `path` for reading, turning every failure into a one-line InputError.

    `what` only words the "is not ..." message ("a video file", "an audio or video file").
    """
    check_file(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as err:
        if _looks_like_media(path):
            # Typical for an mp4 cut short: the index (moov atom) sits at the end and is gone.
            raise InputError(
                f"{path} is truncated or corrupt: "
                f"FFmpeg cannot read the container ({error_reason(err)})"
            ) from err
        raise InputError(f"{path} is not {what}") from err
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{path} cannot be read: {error_reason(err)}") from err


def partial_path(path: Path) -> Path:
    """A hidden, unique sibling of `path` to write into before the final rename.

    Same folder, so os.replace is an atomic rename on one filesystem; the name cannot be mistaken
    for a finished output (hidden, '.partial', no media extension).
    """
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
