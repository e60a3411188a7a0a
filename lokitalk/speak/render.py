"""Rendering a planned drive frame by frame (a generator: one frame in memory at a time)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..data.avatar import Avatar, resize_image
from ..render.frames import render_frame
from ..render.loading import TrainedModel
from .drive import Drive


def rendered_frames(trained: TrainedModel, avatar: Avatar, drive: Drive,
                    show_progress: bool = False) -> Iterator[np.ndarray]:
    camera = avatar.camera.scaled(trained.image_scale)
    background = resize_image(avatar.background(), camera)
    progress = _progress(show_progress, drive.num_frames)
    try:
        for index in range(drive.num_frames):
            with trained.acceleration.autocast(trained.device):
                frame = render_frame(trained.model, avatar, drive.conditioning(index), trained.grid,
                                     trained.render_config, background, scale=trained.image_scale)
            progress(index + 1)
            yield frame
    finally:
        progress(None)


def _progress(show: bool, total: int):
    if not show:
        return lambda done: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("speak"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
    bar.start()
    task = bar.add_task("speak", total=total)

    def update(done):
        if done is None:
            bar.stop()
            return
        bar.update(task, completed=done)

    return update
