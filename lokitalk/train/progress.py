"""The progress bar of a training loop (train, pretrain): steps done, loss, time left."""

from __future__ import annotations

from typing import Callable


def progress_bar(label: str, show: bool, total: int, start: int) -> Callable[[int | None, float | None], None]:
    """update(done, loss) moves the bar; update(None, None) removes it. A no-op when not `show`."""
    if not show:
        return lambda done, loss: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                   TimeRemainingColumn(), transient=True)
    bar.start()
    task = bar.add_task(label, total=total, completed=start, loss="-")

    def update(done, loss):
        if done is None:
            bar.stop()
            return
        bar.update(task, completed=done, loss=f"{loss:.4f}")

    return update
