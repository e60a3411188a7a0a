"""Per-pixel region labels (background, torso, neck, head, face, mouth, eyes) of a frame.

The labels come from two cheap, robust sources and a little geometry, not from a face parser:

* the person probability of the selfie segmenter (where the person is at all), and
* the 478 face-mesh landmarks (where the face, lips and eyes are, how big the head is, which
  way is "down" for it and where its neck must be).

See `region_labels` for the policy. Everything is filled polygons (`cv2.fillPoly`), about a
millisecond or two for a 512x512 frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np

from lokitalk.face_model import FaceTemplate

# Head-frame geometry (metres; x right, y down, z away from the camera; origin about the
# centre of the head, 9 cm behind the nose tip; see face_model.py). Generous on purpose.
_HEAD_HALF_WIDTH = 0.15  # face oval half width is 0.069; big hair reaches ~8 cm beyond it
_HEAD_FRONT_Z = -0.12  # nose tip is at -0.09
_HEAD_BACK_Z = 0.17  # back of the skull ~+0.12, plus hair
_NECK_HALF_WIDTH = 0.07  # "about the face width" wide (face oval: 0.138 m)
_NECK_CENTRE_Z = 0.01  # the neck is under the middle of the head, not under the chin
_NECK_DEPTH = 0.5  # the band ends this many face heights below the chin
_EYE_MARGIN = 1.1  # the open-eye region is the eye's open contour grown by this factor (the lid margin)
_CHIN_MARGIN = 0.06  # the lower face grown by this many face heights (the chin travels ~0.04)
_SHIFT = 4  # fillPoly fixed-point bits: landmarks are sub-pixel, keep 1/16 px


class Region(IntEnum):
    BACKGROUND = 0
    TORSO = 1
    NECK = 2
    HEAD = 3  # hair, ears and other head parts that are not face skin
    FACE = 4  # face skin: the face oval and the face mesh, with eyebrows and nose
    MOUTH = 5  # lips and mouth interior: the filled outer lip contour
    EYES = 6  # both filled eye contours


REGION_COLORS: dict[Region, tuple[int, int, int]] = {  # RGB, for overlays
    Region.BACKGROUND: (0, 0, 0),
    Region.TORSO: (70, 110, 230),
    Region.NECK: (60, 200, 90),
    Region.HEAD: (230, 160, 40),
    Region.FACE: (240, 220, 170),
    Region.MOUTH: (220, 40, 60),
    Region.EYES: (40, 220, 230),
}


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _HeadFrame:
    """A weak-perspective view of the head: image = A @ X + t for head-frame points X."""

    A: np.ndarray  # [2,3]
    t: np.ndarray  # [2]
    down: np.ndarray  # unit image direction of the head's y axis (towards the chin)
    lateral: np.ndarray  # unit, perpendicular to down: image right for an upright face
    scale: float  # pixels per metre

    def project(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float64) @ self.A.T + self.t


def _fit_head_frame(landmarks_px: np.ndarray, template: FaceTemplate) -> _HeadFrame:
    """Least-squares affine camera from the rigid template points to their image positions.

    Why an affine fit and not, say, the line between two landmarks: its columns are the image
    directions of the head axes, so "down" follows roll and stays defined in full profile
    (where left and right landmarks overlap), and its scale does not shrink with yaw.
    """
    X = template.vertices[template.rigid].astype(np.float64)
    x = landmarks_px[template.rigid]
    design = np.hstack([X, np.ones((len(X), 1))])
    M, *_ = np.linalg.lstsq(design, x, rcond=None)  # [4,2]
    A, t = M[:3].T, M[3]
    scale = float(np.sqrt(np.sum(A * A) / 2.0))  # A = s R[:2] for a rotation R
    down_len = float(np.hypot(*A[:, 1]))
    if not np.isfinite(scale) or scale < 1e-6 or down_len < 1e-3 * scale:
        raise ValueError("degenerate face landmarks: cannot tell the face's orientation")
    down = A[:, 1] / down_len
    lateral = np.array([down[1], -down[0]])
    return _HeadFrame(A=A, t=t, down=down, lateral=lateral, scale=scale)


def _rect(frame: _HeadFrame, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """Corners [4,2] of the rectangle u in [u0,u1] (along lateral), v in [v0,v1] (along down)."""
    uv = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])
    return uv[:, :1] * frame.lateral + uv[:, 1:] * frame.down


def open_eye_contour(landmarks_px: np.ndarray, loop: np.ndarray, frame: "_HeadFrame",
                     template: FaceTemplate) -> np.ndarray:
    """[L,2] where the eye `loop` would lie in this frame with the eye open: the template's open
    eye projected with the head frame, then moved, turned and scaled in the image so that its
    corners land on the frame's own eye corners (the corners stay put in a blink, and fit the
    person's eye size), and grown by `_EYE_MARGIN` about its centre."""
    points = template.vertices[loop].astype(np.float64)
    left, right = int(np.argmin(points[:, 0])), int(np.argmax(points[:, 0]))  # the corners (lateral extremes)
    projected = frame.project(points)
    real = landmarks_px[loop]
    src = projected[right] - projected[left]
    dst = real[right] - real[left]
    # the 2-D similarity taking the projected corners onto the real ones (complex ratio: turn and scale)
    ratio = complex(*dst) / complex(*src) if abs(complex(*src)) > 1e-9 else 1.0
    relative = (projected - projected[left]) @ np.array([[ratio.real, ratio.imag], [-ratio.imag, ratio.real]])
    placed = real[left] + relative
    centre = placed.mean(0)
    return centre + _EYE_MARGIN * (placed - centre)


def _fill(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Bool mask of filled float polygons (each [K,2] x,y pixels), to 1/16 px."""
    canvas = np.zeros(shape, np.uint8)
    pts = [np.round(np.asarray(p, np.float64) * (1 << _SHIFT)).astype(np.int32) for p in polygons]
    cv2.fillPoly(canvas, pts, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def _fill_triangles(shape: tuple[int, int], triangles_px: np.ndarray) -> np.ndarray:
    """Union of triangles [T,3,2]. One fillConvexPoly each: a single fillPoly call would use the
    even-odd rule and punch holes where the mesh folds over itself (turned heads)."""
    canvas = np.zeros(shape, np.uint8)
    pts = np.round(triangles_px * (1 << _SHIFT)).astype(np.int32)
    for tri in pts:
        cv2.fillConvexPoly(canvas, tri, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


_TRIANGLES: dict[int, tuple[FaceTemplate, np.ndarray]] = {}


def _mesh_triangles(template: FaceTemplate) -> np.ndarray:
    """Triangles [T,3] of the face mesh: the 3-cliques of its tessellation edge graph.

    (Cached by identity: the template holds arrays, so it is not hashable.)
    """
    hit = _TRIANGLES.get(id(template))
    if hit is not None and hit[0] is template:
        return hit[1]
    neighbours: dict[int, set[int]] = {}
    for a, b in template.tessellation_edges.tolist():
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    found = {
        tuple(sorted((a, b, c)))
        for a, b in template.tessellation_edges.tolist()
        for c in neighbours[a] & neighbours[b]
    }
    tris = np.array(sorted(found), np.intp).reshape(-1, 3)
    _TRIANGLES[id(template)] = (template, tris)
    return tris


def _template_levels(template: FaceTemplate) -> tuple[float, float]:
    """(jaw-angle level y, face height) in the template, metres.

    The jaw line's lateral ends, the angles of the jaw, sit at about the height of the mouth
    corners (the extreme left/right points of the outer lip contour); ears are above that.
    """
    v = template.vertices
    lips = v[template.lips_outer]
    corners_y = 0.5 * (lips[np.argmin(lips[:, 0]), 1] + lips[np.argmax(lips[:, 0]), 1])
    oval_y = v[template.face_oval, 1]
    return float(corners_y), float(oval_y.max() - oval_y.min())


# ----------------------------------------------------------------------------- labels


def region_labels(
    person_prob: np.ndarray,
    landmarks_px: np.ndarray,
    template: FaceTemplate,
    *,
    person_threshold: int = 128,
) -> np.ndarray:
    """Label every pixel of one frame with a `Region`; returns uint8 [H,W].

    person_prob: [H,W] uint8 person probability * 255 (`segment_person`); landmarks_px:
    [478,2] float x,y pixel positions of the face mesh in the same frame.

    Policy, later rules overwriting earlier ones:

    1. person = person_prob >= person_threshold. Not person -> BACKGROUND; person -> TORSO.
    2. A weak-perspective camera fitted to the rigid landmarks gives the face's own "down"
       (follows head roll, defined even in profile), "level" (perpendicular to down) and its
       scale in pixels per metre of the 3-D template.
    3. The jaw line is the lower part of the face oval, whose lateral ends (the jaw angles) are
       at about the height of the mouth corners. Extended level at those ends, it splits the
       frame: person pixels above it -> HEAD (hair, ears), within a generous head width
       (the template head box, 30 cm wide and 29 cm deep, projected, so the zone widens when
       the head turns and shows the back of the head) so that arms or raised shoulders far to
       the side stay TORSO. Inside the face oval rule 5 wins, so "above the extended jaw line,
       outside the oval" is simply "above the level of its ends".
    4. Person pixels below that level, in a band about the face width (14 cm) wide centred
       under the middle of the head (under the chin for a frontal face, behind it in
       profile, where the neck is), down to half a face height below the chin -> NECK. It is a
       band, not a neck detector: it includes the underside of the jaw and some collar.
    5. Face skin: the filled face oval and the filled face-mesh triangles (the mesh covers the
       nose where it sticks out of the oval in profile) -> FACE; the filled outer lip contour
       -> MOUTH; the filled eye contours and the open-eye regions (`open_eye_contour`) -> EYES.
       These count as foreground even where the segmenter missed them: on the face, landmarks
       beat a 256x256 person mask. The eye region must not close with the eye: a blink's
       contour is a line, and a region that followed it would teach the eye attention to vanish,
       and send no eye rays, exactly where the lid comes down (docs/RESULTS.md).
    """
    person_prob = np.asarray(person_prob)
    landmarks_px = np.asarray(landmarks_px, np.float64)
    if person_prob.ndim != 2:
        raise ValueError(f"person_prob must be [H,W], got {person_prob.shape}")
    if landmarks_px.shape != (len(template.vertices), 2):
        raise ValueError(f"landmarks_px must be [{len(template.vertices)},2], got {landmarks_px.shape}")
    if not np.isfinite(landmarks_px).all():
        raise ValueError("landmarks_px has NaN or infinite values (a frame without a face?)")
    shape = person_prob.shape
    frame = _fit_head_frame(landmarks_px, template)
    jaw_y, face_height_m = _template_levels(template)
    lat, down = frame.lateral, frame.down

    # head zone: above the jaw level, between the lateral extremes of the projected head box
    box = np.array(
        [[sx * _HEAD_HALF_WIDTH, jaw_y, z] for sx in (-1, 1) for z in (_HEAD_FRONT_Z, _HEAD_BACK_Z)]
    )
    box_u = frame.project(box) @ lat
    jaw_v = float(frame.project([0.0, jaw_y, 0.0]) @ down)
    far = 4.0 * (shape[0] + shape[1]) + float(np.abs(frame.t).sum())  # off the image, any pose
    head_zone = _fill(shape, [_rect(frame, box_u.min(), box_u.max(), -far, jaw_v)])

    # neck band: below the jaw level, centred under the middle of the head
    chin = landmarks_px[template.face_oval[np.argmax(template.vertices[template.face_oval, 1])]]
    neck_u = float(frame.project([0.0, jaw_y, _NECK_CENTRE_Z]) @ lat)
    half = _NECK_HALF_WIDTH * frame.scale
    bottom = float(chin @ down) + _NECK_DEPTH * face_height_m * frame.scale
    neck_zone = _fill(shape, [_rect(frame, neck_u - half, neck_u + half, jaw_v, bottom)])

    person = person_prob >= person_threshold
    labels = np.full(shape, Region.BACKGROUND, np.uint8)
    labels[person] = Region.TORSO
    labels[person & neck_zone & ~head_zone] = Region.NECK
    labels[person & head_zone] = Region.HEAD
    face = _fill(shape, [landmarks_px[template.face_oval]])
    face |= _fill_triangles(shape, landmarks_px[_mesh_triangles(template)])
    labels[face] = Region.FACE
    labels[_fill(shape, [landmarks_px[template.lips_outer]])] = Region.MOUTH
    eye_loops = [landmarks_px[template.left_eye], landmarks_px[template.right_eye]]
    open_loops = [open_eye_contour(landmarks_px, loop, frame, template) for loop in (template.left_eye, template.right_eye)]
    labels[_fill(shape, eye_loops) | _fill(shape, open_loops)] = Region.EYES
    return labels


def lower_face_mask(shape: tuple[int, int], landmarks_px: np.ndarray, template: FaceTemplate,
                    chin_margin: float = _CHIN_MARGIN) -> np.ndarray:
    """Bool [H,W]: the part of the face that moves when a person speaks, that is everything
    of the face oval below the nose tip (lips, chin, jaw, lower cheeks), grown by
    `chin_margin` face heights so that the chin's outline, which drops over the neck when the
    mouth opens, is inside in every frame. The mouth region alone misses the jaw: on id01 the
    chin travels 6 px of a 168 px face and follows the mouth opening (r 0.63).
    landmarks_px: [478,2] x,y pixels in this frame; NaN landmarks give an empty mask."""
    landmarks_px = np.asarray(landmarks_px, np.float64)
    if not np.isfinite(landmarks_px).all():
        return np.zeros(shape, bool)
    oval = template.face_oval
    level = template.vertices[1, 1]  # the nose tip's height in the head frame (y down)
    below = template.vertices[oval, 1] > level
    # the oval is a loop: start just after an "above" point so that the lower arc is contiguous
    start = int(np.flatnonzero(~below)[-1]) + 1
    order = np.roll(np.arange(len(oval)), -start)
    arc = [oval[i] for i in order if below[i]]
    mask = _fill(shape, [landmarks_px[arc]])
    face_height = float(np.linalg.norm(landmarks_px[oval].max(0) - landmarks_px[oval].min(0)))
    radius = int(round(chin_margin * face_height))
    if radius > 0:
        mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)) > 0
    return mask


def region_labels_batch(
    person_prob: np.ndarray, landmarks_px: np.ndarray, template: FaceTemplate, **kwargs
) -> np.ndarray:
    """`region_labels` for every frame: person_prob [N,H,W], landmarks_px [N,478,2] -> [N,H,W]."""
    if len(person_prob) != len(landmarks_px):
        raise ValueError(f"{len(person_prob)} masks but {len(landmarks_px)} landmark sets")
    out = np.empty(np.shape(person_prob), np.uint8)
    for i, (prob, lms) in enumerate(zip(person_prob, landmarks_px)):
        out[i] = region_labels(prob, lms, template, **kwargs)
    return out


def region_mask(labels: np.ndarray, *regions: Region) -> np.ndarray:
    """Bool mask of the pixels whose label is any of `regions`."""
    return np.isin(labels, np.array([int(r) for r in regions], np.uint8))


def head_mask(labels: np.ndarray) -> np.ndarray:
    """Everything that moves with the skull: HEAD, FACE, MOUTH and EYES."""
    return region_mask(labels, Region.HEAD, Region.FACE, Region.MOUTH, Region.EYES)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB image with the region colours blended in (background left as is); for checks."""
    lut = np.array([REGION_COLORS[Region(i)] for i in range(len(Region))], np.float32)
    a = np.where(labels[..., None] == Region.BACKGROUND, 0.0, alpha).astype(np.float32)
    return np.clip(image.astype(np.float32) * (1 - a) + lut[labels] * a, 0, 255).astype(np.uint8)
