"""Read and check a dataset in the AD-NeRF / RAD-NeRF / ER-NeRF layout, before anything is written.

`read_nerf_dataset` parses the two transforms files and checks that every file the import will
need is there and consistent (frame ids 0..N-1, one image per id, parsing / landmarks / au.csv
complete when present, the audio present). Problems are one-line InputErrors; per-image sizes
are checked while the images are read (import's first step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from . import nerf_format as nf


@dataclass(frozen=True)
class NerfDataset:
    root: Path
    focal: float
    cx: float
    cy: float
    width: int
    height: int
    matrices: np.ndarray  # [N,4,4] float64 transform_matrix, indexed by img_id
    aud_ids: np.ndarray  # [N] audio feature row of each frame (usually = img_id)
    train: np.ndarray  # img_ids in transforms_train.json, in file order
    val: np.ndarray  # img_ids in transforms_val.json
    has_parsing: bool
    has_lms: bool
    has_background: bool
    has_au: bool

    @property
    def num_frames(self) -> int:
        return len(self.matrices)

    def image(self, i: int) -> Path:
        return self.root / nf.IMAGES_DIR / f"{i}.jpg"

    def lms(self, i: int) -> Path:
        return self.root / nf.IMAGES_DIR / f"{i}.lms"

    def parsing(self, i: int) -> Path:
        return self.root / nf.PARSING_DIR / f"{i}.png"


def _load_transforms(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path.parent}: no {path.name}; not a dataset in the AD-NeRF/ER-NeRF layout")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise InputError(f"{path}: no 'frames' list")
    return data


def _intrinsics(data: dict, path: Path) -> tuple[float, float, float]:
    focal = data.get("focal_len", data.get("fl_x", data.get("fl_y")))
    if focal is None or "cx" not in data or "cy" not in data:
        raise InputError(f"{path}: needs 'focal_len' (or 'fl_x'), 'cx' and 'cy'")
    if "fl_x" in data and "fl_y" in data and abs(float(data["fl_x"]) - float(data["fl_y"])) > 1e-6:
        raise InputError(f"{path}: fl_x != fl_y; LokiTalk's camera has square pixels")
    return float(focal), float(data["cx"]), float(data["cy"])


def read_nerf_dataset(root: str | Path) -> NerfDataset:
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such dataset folder")
    if not root.is_dir():
        raise InputError(f"{root} is a file, not a dataset folder")
    splits = {name: _load_transforms(root / fname) for name, fname in nf.TRANSFORMS.items()}
    intrinsics = {name: _intrinsics(d, root / nf.TRANSFORMS[name]) for name, d in splits.items()}
    if not np.allclose(intrinsics["train"], intrinsics["val"], rtol=0, atol=1e-6):
        raise InputError(f"{root}: train and val transforms disagree on the camera "
                         f"({intrinsics['train']} vs {intrinsics['val']})")
    focal, cx, cy = intrinsics["train"]

    matrices: dict[int, np.ndarray] = {}
    aud: dict[int, int] = {}
    ids: dict[str, list[int]] = {"train": [], "val": []}
    for name, data in splits.items():
        for k, frame in enumerate(data["frames"]):
            where = f"{root / nf.TRANSFORMS[name]} frame #{k}"
            try:
                i = int(frame["img_id"])
                m = np.array(frame["transform_matrix"], np.float64)
                a = int(frame.get("aud_id", i))
            except (KeyError, TypeError, ValueError) as err:
                raise InputError(f"{where}: needs an integer 'img_id' and a 4x4 'transform_matrix' ({err})") from err
            if m.shape == (3, 4):
                m = np.vstack([m, [0, 0, 0, 1]])
            if m.shape != (4, 4):
                raise InputError(f"{where}: transform_matrix is {m.shape}, not 4x4")
            if i in matrices and (not np.allclose(matrices[i], m, atol=1e-6) or aud[i] != a):
                raise InputError(f"{where}: img_id {i} appears twice with different poses")
            matrices[i], aud[i] = m, a
            ids[name].append(i)
    for name, listed in ids.items():
        if not listed:  # an empty val split leaves nothing to evaluate on
            raise InputError(f"{root / nf.TRANSFORMS[name]}: no frames")
    if min(matrices) < 0:
        raise InputError(f"{root}: negative img_id {min(matrices)}")
    n = max(matrices) + 1
    missing = sorted(set(range(n)) - set(matrices))
    if missing:
        raise InputError(f"{root}: the transforms list img_ids up to {n - 1} but not {missing[0]} "
                         f"({len(missing)} missing); LokiTalk needs every frame 0..N-1")
    mats = np.stack([matrices[i] for i in range(n)])
    try:
        nf.pose_from_nerf_transforms(mats)
    except ValueError as err:
        raise InputError(f"{root}: {err}") from err
    offsets = np.array([aud[i] - i for i in range(n)])
    if np.any(offsets != offsets[0]):
        raise InputError(f"{root}: aud_id - img_id is not constant ({offsets.min()}..{offsets.max()}); "
                         "LokiTalk keeps audio and video on one timeline")

    absent = [i for i in range(n) if not (root / nf.IMAGES_DIR / f"{i}.jpg").is_file()]
    if absent:
        raise InputError(f"{root}: {len(absent)} of the {n} frames have no image, e.g. "
                         f"{nf.IMAGES_DIR}/{absent[0]}.jpg")
    first = cv2.imread(str(root / nf.IMAGES_DIR / "0.jpg"), cv2.IMREAD_COLOR)
    if first is None:
        raise InputError(f"{root / nf.IMAGES_DIR / '0.jpg'} is not a readable image")
    height, width = first.shape[:2]
    for key, value in (("h", height), ("w", width)):
        for name, data in splits.items():
            if key in data and int(data[key]) != value:
                raise InputError(f"{root / nf.TRANSFORMS[name]}: {key} = {data[key]} but the frames are "
                                 f"{width}x{height}")

    has_parsing = _complete(root, nf.PARSING_DIR, ".png", n)
    has_lms = _complete(root, nf.IMAGES_DIR, ".lms", n)
    if not (root / nf.AUDIO).is_file():
        raise InputError(f"{root}: no {nf.AUDIO}; LokiTalk needs the clip's speech to compute its audio features")
    has_au = (root / nf.AU_CSV).is_file()
    if has_au:
        try:
            au = nf.read_au45(root / nf.AU_CSV)
        except (ValueError, OSError) as err:
            raise InputError(f"{root / nf.AU_CSV}: {err}") from err
        if len(au) < n:
            raise InputError(f"{root / nf.AU_CSV}: {len(au)} rows for {n} frames")
    return NerfDataset(root=root, focal=focal, cx=cx, cy=cy, width=width, height=height, matrices=mats,
                       aud_ids=np.array([aud[i] for i in range(n)]), train=np.array(ids["train"], int),
                       val=np.array(ids["val"], int), has_parsing=has_parsing, has_lms=has_lms,
                       has_background=(root / nf.BACKGROUND).is_file(), has_au=has_au)


def _complete(root: Path, folder: str, suffix: str, n: int) -> bool:
    """Whether every frame has its `folder/<i><suffix>` file; a partial set is an error."""
    if not (root / folder).is_dir():
        return False
    present = [(root / folder / f"{i}{suffix}").is_file() for i in range(n)]
    if not any(present):
        return False
    if not all(present):
        i = present.index(False)
        raise InputError(f"{root}: {folder}/*{suffix} covers {sum(present)} of {n} frames "
                         f"(no {folder}/{i}{suffix})")
    return True
