"""A small step runner: caches finished steps, resumes killed runs, never leaves a
complete-looking output behind.

- Work happens in `<out>.partial/`; only when every step has finished is it renamed to `<out>`
  (an atomic rename on one filesystem), so a folder named `<out>` is always complete.
- Each finished step writes `steps/<name>.json` with its fingerprint (a hash chained from the
  input's identity, the step's version and its config, and the previous step's fingerprint)
  and its result. A re-run skips steps whose fingerprint matches and re-runs the first one that
  changed and everything after it; a killed run resumes from the last finished step.
- A bad-input error (`LokiTalkError`) in a run that started from nothing removes the partial
  folder: there is nothing worth resuming. Other interruptions (Ctrl-C, kill) keep it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, LokiTalkError

STEPS_DIR = "steps"
COMPLETE_MARKER = "summary.json"


@dataclass
class Step:
    name: str
    run: Callable[["StepContext"], dict[str, Any] | None]
    version: int = 1
    config: Any = None  # any value with a stable repr (dataclasses are): part of the fingerprint
    description: str = ""


@dataclass
class StepContext:
    """What steps share: the work folder, earlier steps' results and in-memory caches."""

    work_dir: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # e.g. decoded frames, within one run
    progress: Callable[[int, int | None], None] = lambda advance, total=None: None
    params: dict[str, Any] = field(default_factory=dict)

    def path(self, *parts: str) -> Path:
        return self.work_dir.joinpath(*parts)


def fingerprint(previous: str, step: Step) -> str:
    payload = json.dumps([previous, step.name, step.version, repr(step.config)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_identity(path: Path) -> str:
    """Identity of an input file: its size and a hash of its bytes (content, not the name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.stat().st_size}:{digest.hexdigest()[:24]}"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class StepRunner:
    def __init__(self, out_dir: Path, source_identity: str, kind: str,
                 reporter: "Reporter | None" = None):
        self.out_dir = Path(out_dir)
        self.work_dir = self.out_dir.with_name(self.out_dir.name + ".partial")
        self.source_identity = source_identity
        self.kind = kind  # what a complete folder of this kind says about itself
        self.reporter = reporter or Reporter()

    def _claim_work_dir(self) -> bool:
        """Prepare `<out>.partial`; returns True when the run starts from nothing."""
        if self.out_dir.exists():
            marker = self.out_dir / STEPS_DIR / "kind.json"
            if not marker.exists():
                if self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
                    self.out_dir.rmdir()
                else:
                    raise InputError(f"{self.out_dir} exists and is not a LokiTalk {self.kind}: "
                                     "choose another --out or remove it")
            elif self.work_dir.exists():
                shutil.rmtree(self.work_dir)  # a complete output wins over a stale partial one
            if self.out_dir.exists():
                # re-open a complete output for an incremental update (cached steps skip)
                self.out_dir.replace(self.work_dir)
                (self.work_dir / COMPLETE_MARKER).unlink(missing_ok=True)
                return False
        fresh = not self.work_dir.exists()
        (self.work_dir / STEPS_DIR).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.work_dir / STEPS_DIR / "kind.json", {"kind": self.kind})
        return fresh

    def run(self, steps: list[Step], context_params: dict[str, Any],
            finish: Callable[[StepContext], dict[str, Any]]) -> dict[str, Any]:
        fresh = self._claim_work_dir()
        ctx = StepContext(work_dir=self.work_dir, params=context_params)
        previous = self.source_identity
        try:
            with self.reporter.session(len(steps)) as session:
                for step in steps:
                    fp = fingerprint(previous, step)
                    previous = fp
                    marker = self.work_dir / STEPS_DIR / f"{step.name}.json"
                    if marker.exists():
                        saved = json.loads(marker.read_text())
                        if saved.get("fingerprint") == fp:
                            ctx.results[step.name] = saved["result"]
                            session.skipped(step)
                            continue
                        marker.unlink()
                    ctx.progress = session.start(step)
                    start = time.perf_counter()
                    result = step.run(ctx) or {}
                    elapsed = time.perf_counter() - start
                    ctx.results[step.name] = result
                    write_json_atomic(marker, {"fingerprint": fp, "elapsed_s": round(elapsed, 3),
                                               "result": result})
                    session.finished(step, elapsed)
            summary = finish(ctx)
            write_json_atomic(self.work_dir / COMPLETE_MARKER, summary)
        except LokiTalkError:
            if fresh:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            raise
        self.work_dir.replace(self.out_dir)
        return summary


class Reporter:
    """Progress display; the default shows a rich progress bar per step on stdout."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def session(self, total_steps: int) -> "_Session":
        return _Session(self.quiet, total_steps)


class _Session:
    def __init__(self, quiet: bool, total_steps: int):
        self.quiet = quiet
        self.total_steps = total_steps
        self.index = 0
        self._progress = None
        self._task = None

    def __enter__(self) -> "_Session":
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.console = Console()
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _label(self, step: Step) -> str:
        return f"[{self.index}/{self.total_steps}] {step.description or step.name}"

    def skipped(self, step: Step) -> None:
        self.index += 1
        if not self.quiet:
            self.console.print(f"[dim]{self._label(step)}: cached[/dim]")

    def start(self, step: Step) -> Callable[[int, int | None], None]:
        self.index += 1
        if self._progress is None:
            return lambda advance, total=None: None
        self._task = self._progress.add_task(self._label(step), total=None)
        task = self._task

        def advance(amount: int, total: int | None = None) -> None:
            if total is not None:
                self._progress.update(task, total=total)
            self._progress.advance(task, amount)

        return advance

    def finished(self, step: Step, elapsed: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self.console.print(f"{self._label(step)}: done in {elapsed:.1f} s")
