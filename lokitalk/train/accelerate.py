"""Mixed precision and torch.compile where the device supports them, with an eager fallback.

`auto` turns both on for CUDA devices only: bf16 autocast (no loss scaling needed; off when the
GPU has no bf16) and `torch.compile` of the per-sample path, deformation and canonical field
together (`TalkingHead.evaluate_points`: positional encodings, tri-plane lookups and MLPs over
every kept sample, fused into few kernels; `dynamic=True` because the number of kept samples
changes every call). Compositing stays in fp32 (the renderer scatters field outputs into fp32 buffers), so
transmittance products do not lose precision. If compilation or a compiled call fails — a
missing compiler, an unsupported op — the run continues eagerly and says so once.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Acceleration:
    amp: bool
    amp_dtype: torch.dtype | None
    compile: bool

    def autocast(self, device: torch.device):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.amp_dtype)


def resolve(device: torch.device, amp: str = "auto", compile: str = "auto") -> Acceleration:
    """amp / compile: "auto" (on for CUDA), "on" or "off"."""
    for name, value in (("amp", amp), ("compile", compile)):
        if value not in ("auto", "on", "off"):
            raise ValueError(f"{name} must be auto, on or off, not {value!r}")
    cuda = device.type == "cuda"
    use_amp = amp == "on" or (amp == "auto" and cuda and torch.cuda.is_bf16_supported())
    return Acceleration(amp=use_amp, amp_dtype=torch.bfloat16 if use_amp else None,
                        compile=compile == "on" or (compile == "auto" and cuda))


class CompiledOrEager:
    """Calls a compiled version of `module` (a module or a function, e.g. a bound method) until it
    fails once, then `module` itself."""

    def __init__(self, module: nn.Module | Callable):
        self.module = module
        self.fallback_reason: str | None = None
        try:
            self._compiled = torch.compile(module, dynamic=True)
        except Exception as err:  # torch.compile itself can refuse (e.g. unsupported Python)
            self._fail(err)

    def _fail(self, err: Exception) -> None:
        self._compiled = None
        self.fallback_reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        warnings.warn(f"torch.compile unavailable, running eagerly ({self.fallback_reason})", RuntimeWarning,
                      stacklevel=3)

    def __call__(self, *args, **kwargs):
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as err:
                self._fail(err)
        return self.module(*args, **kwargs)


def accelerate_model(model, acceleration: Acceleration) -> None:
    """Compile the model's per-sample path when asked (a TalkingHead: deformation + field)."""
    model.point_runner = CompiledOrEager(model.evaluate_points) if acceleration.compile else None
    # the density-only path of training's look-ahead pruning (model.renderer, RenderConfig.prune)
    model.density_runner = CompiledOrEager(model.evaluate_density) if acceleration.compile else None
