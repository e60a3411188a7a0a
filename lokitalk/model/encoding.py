"""Multiresolution tri-plane encoding, in pure PyTorch (CPU and CUDA).

A point x in [-1, 1]^3 is projected on the three axis-aligned planes (xy, yz, xz). Each plane has
`levels` 2-D feature grids whose sides grow geometrically from `base_resolution` to
`max_resolution`; the point's feature is the concatenation, over planes and levels, of the
bilinearly interpolated grid values ([N, 3 * levels * features_per_level]). This is ER-NeRF's
canonical-space encoding, with one difference on purpose: grids are stored densely by default
(12 levels of 64..512 cells per side are ~3.3 M values for three planes with 2 features) and
sampled with `F.grid_sample`, which on a GPU is within ~2x of a custom hash-grid kernel (see
DESIGN.md). `hash_table_size` switches levels larger than the table to instant-NGP-style hashed
storage (bilinear corners gathered from a hash table), for very fine grids.

Conventions: coordinates are clamped to [-1, 1]; -1 and +1 are the centres of the first and last
cells (`align_corners=True`). Grid cell (i, j) of a plane holds the value at u = -1 + 2 i /
(R - 1) along the plane's first axis and v = -1 + 2 j / (R - 1) along its second.
`encode_reference` is the slow per-point implementation that tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# plane p uses coordinates (AXES[p][0], AXES[p][1]) of the point
PLANE_AXES = ((0, 1), (1, 2), (0, 2))
HASH_PRIME = 2654435761  # instant-NGP's second prime; the first axis uses 1


@dataclass(frozen=True)
class TriPlaneConfig:
    levels: int = 12
    features_per_level: int = 2
    base_resolution: int = 64
    max_resolution: int = 512
    hash_table_size: int | None = None  # None: every level dense
    init_scale: float = 1e-4

    def resolutions(self) -> list[int]:
        if self.levels == 1:
            return [self.base_resolution]
        growth = (self.max_resolution / self.base_resolution) ** (1.0 / (self.levels - 1))
        return [int(round(self.base_resolution * growth**level)) for level in range(self.levels)]

    @property
    def output_dim(self) -> int:
        return 3 * self.levels * self.features_per_level


class TriPlaneEncoding(nn.Module):
    def __init__(self, config: TriPlaneConfig = TriPlaneConfig()):
        super().__init__()
        self.config = config
        self.resolutions = config.resolutions()
        feats = config.features_per_level
        self.dense = nn.ParameterList()
        self.hashed = nn.ParameterList()
        self.level_kind: list[tuple[str, int]] = []  # ("dense"|"hashed", index into that list)
        for res in self.resolutions:
            if config.hash_table_size is not None and res * res > config.hash_table_size:
                table = torch.empty(3, config.hash_table_size, feats).uniform_(-config.init_scale, config.init_scale)
                self.level_kind.append(("hashed", len(self.hashed)))
                self.hashed.append(nn.Parameter(table))
            else:
                grid = torch.empty(3, feats, res, res).uniform_(-config.init_scale, config.init_scale)
                self.level_kind.append(("dense", len(self.dense)))
                self.dense.append(nn.Parameter(grid))

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,3] in [-1,1] -> [N, 3 * levels * features_per_level]."""
        x = x.clamp(-1.0, 1.0)
        # [3, N, 2]: the point's 2-D coordinates on each plane
        uv = torch.stack([x[:, list(axes)] for axes in PLANE_AXES], dim=0)
        per_level = []
        for (kind, index), res in zip(self.level_kind, self.resolutions):
            if kind == "dense":
                grid = self.dense[index].to(x.dtype)
                # grid_sample wants [B,C,H,W] and sample grid [B,Hout,Wout,2] with (x=width, y=height):
                # width indexes the plane's first axis (i), height its second (j)
                sampled = F.grid_sample(grid.transpose(2, 3), uv[:, None], mode="bilinear",
                                        padding_mode="border", align_corners=True)  # [3,F,1,N]
                per_level.append(sampled[:, :, 0].permute(2, 0, 1))  # [N,3,F]
            else:
                per_level.append(self._hashed_level(self.hashed[index].to(x.dtype), uv, res))
        feats = torch.stack(per_level, dim=2)  # [N,3,L,F]
        return feats.reshape(x.shape[0], -1)

    @staticmethod
    def _hashed_level(table: torch.Tensor, uv: torch.Tensor, res: int) -> torch.Tensor:
        """Bilinear lookup in a hashed grid: table [3,T,F], uv [3,N,2] -> [N,3,F]."""
        size = table.shape[1]
        pos = (uv + 1.0) * 0.5 * (res - 1)
        base = pos.floor().clamp(0, res - 2)
        frac = pos - base
        base = base.long()
        out = 0.0
        for di in (0, 1):
            for dj in (0, 1):
                i, j = base[..., 0] + di, base[..., 1] + dj
                index = (i ^ (j * HASH_PRIME)) % size  # [3,N]
                corner = torch.gather(table, 1, index[..., None].expand(-1, -1, table.shape[2]))
                wi = frac[..., 0] if di else 1 - frac[..., 0]
                wj = frac[..., 1] if dj else 1 - frac[..., 1]
                out = out + corner * (wi * wj)[..., None]
        return out.permute(1, 0, 2)


def _cell_value(encoding: TriPlaneEncoding, level: int, plane: int, i: int, j: int) -> torch.Tensor:
    kind, index = encoding.level_kind[level]
    if kind == "dense":
        return encoding.dense[index][plane, :, i, j]
    table = encoding.hashed[index]
    return table[plane, (i ^ (j * HASH_PRIME)) % table.shape[1]]


def encode_reference(encoding: TriPlaneEncoding, x: torch.Tensor) -> torch.Tensor:
    """Slow reference: explicit bilinear interpolation, point by point, plane by plane."""
    rows = []
    for point in x.clamp(-1.0, 1.0):
        feats = []
        for plane, (a, b) in enumerate(PLANE_AXES):
            for level, res in enumerate(encoding.resolutions):
                u = (float(point[a]) + 1.0) * 0.5 * (res - 1)
                v = (float(point[b]) + 1.0) * 0.5 * (res - 1)
                i0, j0 = min(int(u), res - 2), min(int(v), res - 2)
                fu, fv = u - i0, v - j0
                value = ((1 - fu) * (1 - fv) * _cell_value(encoding, level, plane, i0, j0)
                         + fu * (1 - fv) * _cell_value(encoding, level, plane, i0 + 1, j0)
                         + (1 - fu) * fv * _cell_value(encoding, level, plane, i0, j0 + 1)
                         + fu * fv * _cell_value(encoding, level, plane, i0 + 1, j0 + 1))
                feats.append((plane, level, value))
        # output order: [plane][level][feature], as forward's reshape of [3,L,F]
        feats.sort(key=lambda item: (item[0], item[1]))
        rows.append(torch.cat([v for _, _, v in feats]))
    return torch.stack(rows)
