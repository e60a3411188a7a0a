"""Shared fixtures: paths to the real media (skipped when absent) and small synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LOKITALK_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """A file of ../shared/data, or a clean skip when the folder is not there."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real media not available: {path}")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def consent_for(video: Path, out: Path | None = None, subject: str = "synthetic test subject",
                **kwargs) -> Path:
    """Write a consent record for `video` (beside it unless `out` is given; never beside shared
    media) and return its path."""
    from lokitalk.provenance.consent import create_consent, default_consent_path, save_consent

    return save_consent(create_consent(video, subject, **kwargs), out or default_consent_path(video))


def synthetic_avatar(root: Path, duration_s: float, size: int, seed: int) -> Path:
    """The synthetic talking subject written to ROOT/clip.mp4, given a consent record and
    prepared into ROOT/avatar (returned)."""
    from lokitalk.prepare.pipeline import prepare
    from lokitalk.prepare.runner import Reporter
    from lokitalk.synth import make_talking_clip, write_clip

    video = write_clip(make_talking_clip(duration_s=duration_s, size=size, seed=seed), Path(root) / "clip.mp4")
    consent_for(video)
    prepare(video, Path(root) / "avatar", reporter=Reporter(quiet=True))
    return Path(root) / "avatar"


def micro_model(root: Path, duration_s: float, size: int, seed: int, steps: int) -> Path:
    """ROOT with the synthetic subject prepared into ROOT/avatar and a micro model (test_trainer's
    micro_config, `steps` steps) trained on it into ROOT/model; returns ROOT."""
    from dataclasses import replace

    from lokitalk.train.trainer import train
    from test_trainer import micro_config

    synthetic_avatar(root, duration_s, size, seed)
    train(root / "avatar", root / "model", replace(micro_config(steps), checkpoint_every=steps), device="cpu",
          show_progress=False)
    return root


def run_cli(args, capsys) -> tuple[int | None, str, str]:
    """Run `lokitalk ARGS` in this process, as a user would; returns (exit code, stdout, stderr)."""
    import sys

    from lokitalk.cli import main

    old = sys.argv
    sys.argv = ["lokitalk", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err.strip()


def assert_clean_failure(code, err: str, out: Path, *needles: str) -> None:
    """A bad-input failure: non-zero exit, one 'error:' line naming the problem, and no output
    folder (complete or partial) left behind."""
    assert code not in (0, None)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def camera_rays(n: int, seed: int, spread: float):
    """n unit rays from (0, 0, -0.6) towards random points within `spread` m of the origin across
    (x, y) and 0.05 m in depth: rays through a test field centred on the origin ([n,3], [n,3])."""
    import torch

    g = torch.Generator().manual_seed(seed)
    origins = torch.tensor([0.0, 0.0, -0.6]).expand(n, 3).clone()
    targets = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([2 * spread, 2 * spread, 0.1])
    directions = targets - origins
    return origins, directions / directions.norm(dim=-1, keepdim=True)
