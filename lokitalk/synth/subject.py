"""A synthetic talking subject with known mouth opening, blinks and head motion.

The subject is the astronaut portrait that ships with scikit-image (Eileen Collins, a NASA
photograph in the public domain), cropped to head and shoulders (portrait pixels x 100..400,
y 0..300) and animated with three image-space edits whose parameters are the ground truth:

- mouth: `mouth_opening` m in [0, 1] sets the gap between the inner lips to m x 16 portrait
  pixels (about 15 % of the face height at m = 1). The photograph's own smile (a 7 px gap showing
  the upper teeth) is m ~ 0.44. Below that the lips close over the teeth (the upper lip moves down
  a third of the way, the lower lip up two thirds) and at m = 0 they meet. Above it the jaw drops:
  the lower lip, chin and the skin down to the neck move down through a smooth vertical
  displacement field and the gap below the upper teeth is painted as the mouth's interior (dark,
  with the tongue and the edge of the lower teeth showing as it widens). m follows the speech
  envelope times the openness of the vowel, smoothed with zero phase (the lips do not lag the
  sound). The portrait's mouth is at rest in its natural smile, so m = 0 means lips closed.
- eyes: `eye_closure` c in [0, 1] lowers each upper eyelid by c of the eye's height; the
  skin between the eye and the brow is stretched down over the eye (a vertical remap), so the lash
  line travels with the lid. Blinks come every 2-5 s, last 100-250 ms (40 % closing, 60 %
  opening) and are fully closed on one frame.
- head: the person is matted from the background once (GrabCut seeded by the face-mesh
  landmarks) and the background plate is filled in behind them, so the background stays static.
  Each frame the whole person translates by `head_shift_px`, and the head (hair, face and upper
  neck; a soft weight map fading out over the neck) additionally rolls by `head_roll_deg` and
  scales by `head_scale` about the chin (landmark 152). The motion is a sum of three slow seeded
  sinusoids per parameter, bounded by +-4 degrees, +-6 px (at 256 px; proportional to size) and
  +-3 %.

Rendering is a few remaps per frame on a rig built once per size (about 0.5 s, mostly the GrabCut
matte); a frame then takes about 2 ms at 256 px and 9 ms at 512 px on one CPU core.
`write_clip` writes H.264 + AAC through lokitalk.media.video_writer.write_video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..face_model import load_face_template
from .speech import ENVELOPE_RATE, synth_speech, vowel_openness

SAMPLE_RATE = 16000
PORTRAIT_CROP = (100, 0, 400, 300)  # x0, y0, x1, y1 of the output square in the portrait

# Geometry in portrait pixels (the 512 x 512 photograph).
GAP_MAX = 16.0  # inner-lip gap at mouth_opening = 1
UPPER_LIP_REACH = 9.0  # how far above the upper lip its downward shift fades out
LOWER_LIP_REACH = 12.0  # how far below the lower lip its upward shift fades out
NECK_FADE = (-2.0, 16.0)  # the jaw displacement fades from chin+a to chin+b
TEETH_SPLIT = 0.75  # the upper teeth end this far from the upper to the lower inner lip
LID_REACH = 7.0  # the skin stretched over a closing eye starts this far above it
LID_OVERSHOOT = 1.15  # a closed lid covers this times the eye's contour height

# Head motion bounds (shift in output pixels per 256 px of frame size).
ROLL_MAX_DEG = 4.0
SHIFT_MAX_PX = 6.0
SCALE_MAX = 0.03

MOUTH_SMOOTH_S = 0.03  # Gaussian sigma of the mouth-opening smoothing
BLINK_INTERVAL_S = (2.0, 5.0)
BLINK_DURATION_S = (0.10, 0.25)
BLINK_CLOSING_FRACTION = 0.4

_INTERIOR_DARK = np.array([58.0, 20.0, 25.0], np.float32)
_INTERIOR_TONGUE = np.array([172.0, 80.0, 88.0], np.float32)


@dataclass(frozen=True)
class SyntheticClip:
    frames: np.ndarray  # [N,H,W,3] uint8 RGB
    audio: np.ndarray  # float32 mono, SAMPLE_RATE
    fps: float
    mouth_opening: np.ndarray  # [N] ground truth in [0,1] (0 closed)
    eye_closure: np.ndarray  # [N] ground truth in [0,1] (1 fully closed)
    blink_frames: list[tuple[int, int]]  # (first, last) frame of each blink, inclusive
    head_roll_deg: np.ndarray  # [N] in-plane head rotation applied (positive: clockwise on screen)
    head_shift_px: np.ndarray  # [N,2] (x, y) translation of the person, output px (the chin moves by exactly this)
    head_scale: np.ndarray  # [N] head scale about the chin (1 = the portrait's)
    envelope: np.ndarray  # speech envelope at 100 Hz on the video's timeline (before any delay)
    sample_rate: int = SAMPLE_RATE
    audio_delay_ms: float = 0.0  # the audio lags the video by this much (negative: leads)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


# --------------------------------------------------------------------------- the rig


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _arcs(points: np.ndarray, loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a closed contour at its leftmost and rightmost points into its upper and lower
    arcs, each [K,2] sorted by x (image y down: upper = smaller y)."""
    p = points[loop]
    i0, i1 = int(np.argmin(p[:, 0])), int(np.argmax(p[:, 0]))
    n = len(p)
    path_a = [p[(i0 + k) % n] for k in range((i1 - i0) % n + 1)]
    path_b = [p[(i1 + k) % n] for k in range((i0 - i1) % n + 1)]
    a, b = np.array(path_a), np.array(path_b)
    if a[:, 1].mean() > b[:, 1].mean():
        a, b = b, a
    a, b = a[np.argsort(a[:, 0])], b[np.argsort(b[:, 0])]
    return a, b


@dataclass(frozen=True)
class _MouthRig:
    x0: int
    y0: int
    xc: np.ndarray  # [1,w] column centres (scaled portrait coordinates)
    yc: np.ndarray  # [h,1] row centres
    a: np.ndarray  # [1,w] upper inner lip
    b: np.ndarray  # [1,w] lower inner lip
    c: np.ndarray  # [1,w] lower edge of the upper teeth
    p: np.ndarray  # [1,w] lens profile of the gap across the mouth
    u: np.ndarray  # [1,w] (x - centre) / half width
    gap0: float  # the portrait's own inner-lip gap at the centre
    span: float  # lower lip to chin
    neck_fade: np.ndarray  # [h,1] 1 above the chin, fading to 0 over the neck
    upper_reach: float
    lower_reach: float
    teeth_colour: np.ndarray  # [3]


@dataclass(frozen=True)
class _EyeRig:
    x0: int
    y0: int
    xc: np.ndarray  # [1,w]
    yc: np.ndarray  # [h,1]
    top: np.ndarray  # [1,w]
    height: np.ndarray  # [1,w] lid travel at full closure
    reach: float


@dataclass(frozen=True)
class _Rig:
    size: int
    scale: float  # output pixels per portrait pixel
    image: np.ndarray  # scaled portrait, float32 [S',S',3]
    matte: np.ndarray  # person matte on the scaled portrait, float32 [S',S']
    plate: np.ndarray  # background with the person filled in, output window, float32 [S,S,3]
    grid_x: np.ndarray  # [S,S] output pixel centres in scaled-portrait coordinates
    grid_y: np.ndarray
    head_weight: np.ndarray  # [S,S] 1 on the head, 0 on the body and background
    pivot: np.ndarray  # [2] chin, scaled-portrait coordinates
    offset: np.ndarray  # [2] output window origin in scaled-portrait coordinates
    mouth: _MouthRig
    eyes: tuple[_EyeRig, _EyeRig]


@lru_cache(maxsize=1)
def _portrait() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@lru_cache(maxsize=1)
def _person_mask() -> np.ndarray:
    """Binary person matte of the 512 x 512 portrait (GrabCut seeded from the landmarks)."""
    img = _portrait()
    tpl = load_face_template()
    uv = tpl.portrait_uv.astype(np.float64)
    x0, y0, x1, y1 = 40, 0, 460, 360
    roi = np.ascontiguousarray(img[y0:y1, x0:x1, ::-1])
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    cx, cy = uv[tpl.face_oval].mean(axis=0)
    mask = np.full(roi.shape[:2], cv2.GC_PR_BGD, np.uint8)
    head = ((xx - cx) / 82.0) ** 2 + ((yy - cy + 25.0) / 88.0) ** 2
    mask[head < 1.0] = cv2.GC_PR_FGD
    mask[(head > 1.35) & (yy < 140)] = cv2.GC_BGD
    mask[(yy > 150) & (np.abs(xx - cx - 10) < 60 + (yy - 150) * 1.2)] = cv2.GC_PR_FGD
    mask[(yy > 200) & (np.abs(xx - cx - 10) < 40 + (yy - 200) * 0.9)] = cv2.GC_FGD
    mask[(xx > 364) & (yy < 320)] = cv2.GC_BGD  # shuttle and its stand
    mask[(xx < 90) & (yy < 220)] = cv2.GC_BGD  # flag
    cv2.fillPoly(mask, [np.round(uv[tpl.face_oval] - [x0, y0]).astype(np.int32)], cv2.GC_FGD)
    mask[((xx - cx) / 50.0) ** 2 + ((yy - cy + 70.0) / 32.0) ** 2 < 1.0] = cv2.GC_FGD  # hair
    mask[(yy > 170) & (yy < 200) & (np.abs(xx - cx) < 28)] = cv2.GC_FGD  # neck
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(roi, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    out = np.zeros(img.shape[:2], bool)
    out[y0:y1, x0:x1] = fg
    out[y1:, :] = True  # below the ROI: the suit (never sampled by the output crop)
    # keep the one big component (drops specks GrabCut may leave in the background)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(out.astype(np.uint8), connectivity=8)
    if n > 2:
        keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        out = labels == keep
    return out


def _fill_behind(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of `image` from the known ones by normalised convolution at
    growing scales (a smooth guess of the wall behind the person)."""
    out = image.copy()
    filled = known.astype(np.float32)
    k = known.astype(np.float32)
    num = image * k[..., None]
    for sigma in (2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
        wsum = cv2.GaussianBlur(k, (0, 0), sigma)
        est = cv2.GaussianBlur(num, (0, 0), sigma) / np.maximum(wsum, 1e-6)[..., None]
        take = (filled < 0.5) & (wsum > 0.02)
        out[take] = est[take]
        filled[take] = 1.0
    rest = filled < 0.5
    if rest.any():
        out[rest] = image[known].mean(axis=0)
    return out


def _mouth_rig(uv: np.ndarray, image: np.ndarray, scale: float) -> _MouthRig:
    tpl = load_face_template()
    up_in, lo_in = _arcs(uv, tpl.lips_inner)
    up_out, _ = _arcs(uv, tpl.lips_outer)
    xl, xr = up_in[0, 0], up_in[-1, 0]
    xm, hw = 0.5 * (xl + xr), 0.5 * (xr - xl)
    chin_y = float(uv[152, 1])
    upper_reach = UPPER_LIP_REACH * scale
    fade0, fade1 = chin_y + NECK_FADE[0] * scale, chin_y + NECK_FADE[1] * scale
    x0 = int(math.floor(xm - 1.9 * hw))
    x1 = int(math.ceil(xm + 1.9 * hw))
    y0 = int(math.floor(up_out[:, 1].min() - upper_reach - 2))
    y1 = int(math.ceil(fade1 + 2))
    xc = (np.arange(x0, x1) + 0.5)[None, :]
    yc = (np.arange(y0, y1) + 0.5)[:, None]
    a = np.interp(xc, up_in[:, 0], up_in[:, 1])
    b = np.interp(xc, lo_in[:, 0], lo_in[:, 1])
    # the arcs meet at the corners; outside them both follow the corner line
    b = np.maximum(b, a)
    u = (xc - xm) / hw
    p = np.clip(1.0 - u * u, 0.0, 1.0)
    c = a + TEETH_SPLIT * (b - a)
    gap0 = float(np.interp(xm, lo_in[:, 0], lo_in[:, 1]) - np.interp(xm, up_in[:, 0], up_in[:, 1]))
    span = chin_y - float(np.interp(xm, lo_in[:, 0], lo_in[:, 1]))
    neck_fade = 1.0 - _smoothstep((yc - fade0) / (fade1 - fade0))
    # colour of the upper teeth, for the lower teeth that show when the jaw drops
    cols = np.abs(u[0]) < 0.4
    teeth = []
    for j in np.nonzero(cols)[0]:
        ya, yb = a[0, j] + 1.0 * scale, c[0, j] - 0.5 * scale
        for y in np.arange(math.ceil(ya), math.floor(yb) + 1):
            teeth.append(image[int(y), x0 + j])
    teeth_colour = np.median(np.array(teeth), axis=0) if teeth else np.array([220, 210, 190], np.float32)
    return _MouthRig(
        x0=x0, y0=y0, xc=xc, yc=yc, a=a, b=b, c=c, p=p, u=u, gap0=gap0, span=span,
        neck_fade=neck_fade, upper_reach=upper_reach, lower_reach=LOWER_LIP_REACH * scale,
        teeth_colour=np.asarray(teeth_colour, np.float32),
    )


def _eye_rig(uv: np.ndarray, loop: np.ndarray, scale: float) -> _EyeRig:
    upper, lower = _arcs(uv, loop)
    reach = LID_REACH * scale
    x0 = int(math.floor(upper[0, 0] - 1))
    x1 = int(math.ceil(upper[-1, 0] + 1))
    y0 = int(math.floor(upper[:, 1].min() - reach - 1))
    y1 = int(math.ceil(lower[:, 1].max() + 2))
    xc = (np.arange(x0, x1) + 0.5)[None, :]
    yc = (np.arange(y0, y1) + 0.5)[:, None]
    top = np.interp(xc, upper[:, 0], upper[:, 1])
    bottom = np.interp(xc, lower[:, 0], lower[:, 1])
    height = np.maximum(bottom - top, 0.0) * LID_OVERSHOOT
    return _EyeRig(x0=x0, y0=y0, xc=xc, yc=yc, top=top, height=height, reach=reach)


@lru_cache(maxsize=4)
def _rig(size: int) -> _Rig:
    portrait = _portrait()
    cx0, cy0, cx1, cy1 = PORTRAIT_CROP
    scale = size / float(cx1 - cx0)
    side = int(round(portrait.shape[0] * scale))
    scale = side / float(portrait.shape[0])  # exact factor of the resized portrait
    image = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    person = _person_mask()
    matte = cv2.resize(person.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    matte = cv2.GaussianBlur(matte, (0, 0), max(0.5, 0.6 * scale))
    tpl = load_face_template()
    uv = tpl.portrait_uv.astype(np.float64) * scale

    offset = np.array([cx0 * scale, cy0 * scale])
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float32)
    grid_x = gx + 0.5 + np.float32(offset[0])
    grid_y = gy + 0.5 + np.float32(offset[1])

    # background plate: the portrait with the (generously dilated) person filled in
    known = cv2.erode((matte < 0.02).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, round(2 * scale)))
    filled = _fill_behind(image, known.astype(bool))
    plate = cv2.remap(filled, grid_x - 0.5, grid_y - 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    # head weight: the person above the chin (plus a little neck), feathered
    chin = uv[152]
    head = person.copy()
    head[int(round(chin[1] / scale + 4)) :, :] = False
    head_s = cv2.resize(head.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    head_s = np.clip(2.0 * cv2.GaussianBlur(head_s, (0, 0), 5.0 * scale), 0.0, 1.0)
    head_weight = cv2.remap(head_s, grid_x - 0.5, grid_y - 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    return _Rig(
        size=size, scale=scale, image=image, matte=matte, plate=plate,
        grid_x=grid_x, grid_y=grid_y, head_weight=head_weight, pivot=chin, offset=offset,
        mouth=_mouth_rig(uv, image, scale),
        eyes=(_eye_rig(uv, tpl.right_eye, scale), _eye_rig(uv, tpl.left_eye, scale)),
    )


# --------------------------------------------------------------------------- per-frame edits


def _edit_mouth(img: np.ndarray, src: np.ndarray, r: _MouthRig, gap: float) -> None:
    """Open or close the mouth in place: `gap` is the inner-lip gap at the centre (scaled px)."""
    if gap < r.gap0:
        q, jaw = 1.0 - gap / r.gap0, 0.0
    else:
        q, jaw = 0.0, gap - r.gap0
    g = r.b - r.a
    du, dl = 0.35 * q * g, 0.65 * q * g
    jp = jaw * r.p
    top = r.a + du
    bot = r.b - dl + jp
    y = r.yc
    below = y - bot
    v = np.clip(below / r.span, 0.0, None)
    expo = 2.0 + 2.0 * np.minimum(v, 1.0)
    lens = np.clip(1.0 - np.abs(r.u / (1.0 + 0.5 * np.minimum(v, 1.2))) ** expo, 0.0, 1.0)
    jaw_field = jaw * lens * (1.0 - 0.1 * np.minimum(v, 1.5)) * r.neck_fade
    lower_shift = jaw_field - dl * np.clip(1.0 - below / r.lower_reach, 0.0, 1.0)
    upper_shift = du * np.clip(1.0 - (top - y) / r.upper_reach, 0.0, 1.0)
    # three source maps (above the upper lip, between the lips, below the lower lip), blended by
    # how much of each pixel lies in each band so the lip edges are anti-aliased
    map_mid = np.where(y < r.c + jp, y, y - jp)
    w_up = np.clip(top - y + 0.5, 0.0, 1.0)
    w_lo = np.clip(y + 0.5 - bot, 0.0, 1.0)
    w_mid = np.clip(1.0 - w_up - w_lo, 0.0, 1.0)
    map_x = (np.broadcast_to(r.xc, map_mid.shape) - 0.5).astype(np.float32)
    h, w = map_mid.shape

    def sample(map_y: np.ndarray) -> np.ndarray:
        return cv2.remap(src, map_x, (map_y - 0.5).astype(np.float32), cv2.INTER_LINEAR)

    region = (
        w_up[..., None] * sample(y - upper_shift)
        + w_lo[..., None] * sample(y - lower_shift)
        + w_mid[..., None] * sample(map_mid)
    ) / np.maximum(w_up + w_lo + w_mid, 1e-6)[..., None]
    if jaw > 0:
        # the mouth's interior between the upper teeth and the lower lip
        lo, hi = np.maximum(r.c, top), np.minimum(r.c + jp, bot)
        cover = np.clip(np.minimum(hi, y + 0.5) - np.maximum(lo, y - 0.5), 0.0, 1.0)
        if cover.any():
            depth = np.clip((y - lo) / np.maximum(hi - lo, 1e-3), 0.0, 1.0)
            tongue = _smoothstep((depth - 0.35) / 0.65) * np.clip(jp / (0.2 * r.span), 0.0, 0.85)
            colour = _INTERIOR_DARK + tongue[..., None] * (_INTERIOR_TONGUE - _INTERIOR_DARK)
            # lower teeth: a thin band just above the lower lip once the jaw has dropped
            teeth_h = np.minimum(0.22 * jp, 0.12 * r.span)
            teeth = np.clip(np.minimum(hi, y + 0.5) - np.maximum(hi - teeth_h, y - 0.5), 0.0, 1.0)
            teeth = teeth * np.clip(r.p * 1.6 - 0.3, 0.0, 1.0)
            colour = colour + teeth[..., None] * (0.8 * r.teeth_colour - colour)
            # darker toward the corners and right under the upper teeth
            shade = (0.6 + 0.4 * r.p) * (0.7 + 0.3 * _smoothstep(depth / 0.3))
            colour = colour * shade[..., None]
            region += cover[..., None] * (colour - region)
    img[r.y0 : r.y0 + h, r.x0 : r.x0 + w] = region


def _edit_eye(img: np.ndarray, src: np.ndarray, r: _EyeRig, closure: float) -> None:
    """Lower the upper lid in place by `closure` of the eye's height."""
    if closure <= 1e-3:
        return
    travel = closure * r.height
    start = r.top - r.reach
    lid = r.top + travel
    y = r.yc
    lifted = np.where(y < start, y, start + (y - start) * r.reach / (r.reach + travel))
    cover = np.clip(lid - y + 0.5, 0.0, 1.0)[..., None]  # fraction of the pixel above the lid edge
    map_x = (np.broadcast_to(r.xc, lifted.shape) - 0.5).astype(np.float32)
    h, w = lifted.shape
    lid_px = cv2.remap(src, map_x, (lifted - 0.5).astype(np.float32), cv2.INTER_LINEAR)
    eye_px = src[r.y0 : r.y0 + h, r.x0 : r.x0 + w]
    img[r.y0 : r.y0 + h, r.x0 : r.x0 + w] = eye_px + cover * (lid_px - eye_px)


def _render(rig: _Rig, gap: float, closure: float, roll_deg: float, shift: np.ndarray, scale: float) -> np.ndarray:
    img = rig.image.copy()
    _edit_mouth(img, rig.image, rig.mouth, gap * rig.scale)
    for eye in rig.eyes:
        _edit_eye(img, rig.image, eye, closure)
    # inverse warp: body = translation, head = translation + roll and scale about the chin
    th = math.radians(roll_deg)
    cs, sn = math.cos(th) / scale, math.sin(th) / scale
    bx = rig.grid_x - np.float32(shift[0])
    by = rig.grid_y - np.float32(shift[1])
    dx, dy = bx - np.float32(rig.pivot[0]), by - np.float32(rig.pivot[1])
    hx = np.float32(rig.pivot[0]) + np.float32(cs) * dx + np.float32(sn) * dy
    hy = np.float32(rig.pivot[1]) - np.float32(sn) * dx + np.float32(cs) * dy
    w = rig.head_weight
    sx = bx + w * (hx - bx) - 0.5
    sy = by + w * (hy - by) - 0.5
    fg = cv2.remap(img, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.remap(rig.matte, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = rig.plate + alpha[..., None] * (fg - rig.plate)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- timelines


def _mouth_track(envelope: np.ndarray, openness: np.ndarray, times: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    m = gaussian_filter1d(envelope.astype(np.float64) * openness, MOUTH_SMOOTH_S * ENVELOPE_RATE, mode="nearest")
    centres = (np.arange(len(m)) + 0.5) / ENVELOPE_RATE
    return np.clip(np.interp(times, centres, m), 0.0, 1.0)


def _blink_track(num_frames: int, fps: float, seed: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    rng = np.random.default_rng([seed, 20])
    duration = num_frames / fps
    times = np.arange(num_frames) / fps
    closure = np.zeros(num_frames)
    spans: list[tuple[int, int]] = []
    t = float(rng.uniform(0.6, 2.0))
    while True:
        length = float(rng.uniform(*BLINK_DURATION_S))
        peak = round((t + BLINK_CLOSING_FRACTION * length) * fps) / fps  # fully closed on a frame
        t0, t1 = peak - BLINK_CLOSING_FRACTION * length, peak + (1 - BLINK_CLOSING_FRACTION) * length
        if t1 > duration - 1.0 / fps:
            break
        rising = (times >= t0) & (times <= peak)
        falling = (times > peak) & (times < t1)
        closure[rising] = np.maximum(closure[rising], _smoothstep((times[rising] - t0) / (peak - t0)))
        closure[falling] = np.maximum(closure[falling], 1.0 - _smoothstep((times[falling] - peak) / (t1 - peak)))
        frames = np.nonzero((times >= t0) & (times <= t1) & (closure > 0))[0]
        spans.append((int(frames[0]), int(frames[-1])))
        t = t1 + float(rng.uniform(*BLINK_INTERVAL_S))
    return closure, spans


def _head_track(num_frames: int, fps: float, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth sway: per parameter, three sinusoids (0.08-0.2, 0.2-0.45, 0.45-0.8 Hz) with weights
    summing to one, so each stays within its bound."""
    rng = np.random.default_rng([seed, 30])
    t = np.arange(num_frames) / fps
    weights = np.array([0.5, 0.3, 0.2])
    bands = [(0.08, 0.2), (0.2, 0.45), (0.45, 0.8)]

    def sway() -> np.ndarray:
        out = np.zeros(num_frames)
        for wgt, (f_lo, f_hi) in zip(weights, bands):
            out += wgt * np.sin(2 * np.pi * rng.uniform(f_lo, f_hi) * t + rng.uniform(0, 2 * np.pi))
        return out

    roll = ROLL_MAX_DEG * sway()
    shift_max = SHIFT_MAX_PX * size / 256.0
    shift = np.stack([shift_max * sway(), shift_max * sway()], axis=1)
    scale = 1.0 + SCALE_MAX * sway()
    return roll, shift, scale


# --------------------------------------------------------------------------- public API


def _given_speech(speech, total_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio, envelope, openness) of a tts.Speech, cut or padded with silence to total_s."""
    if speech.sample_rate != SAMPLE_RATE:
        raise ValueError(f"speech must be at {SAMPLE_RATE} Hz, not {speech.sample_rate}")

    def fit(x: np.ndarray, n: int) -> np.ndarray:
        x = np.asarray(x, np.float32)[:n]
        return np.concatenate([x, np.zeros(n - len(x), np.float32)])

    m = int(round(total_s * ENVELOPE_RATE))
    return (fit(speech.audio, int(round(total_s * SAMPLE_RATE))), fit(speech.envelope, m),
            fit(speech.openness, m))


def make_talking_clip(
    duration_s: float | None = 6.0,
    fps: float = 25.0,
    size: int = 256,
    seed: int = 0,
    audio_delay_ms: float = 0.0,
    speech=None,
) -> SyntheticClip:
    """Render the synthetic talking subject.

    The frames, the ground truth and the speech timeline do not depend on `audio_delay_ms`; only
    the audio track does: audio(t) = speech(t - delay), so a positive delay makes the sound lag
    the lips (silence is padded at the start; a negative delay takes the speech from later on).

    `speech`: a `lokitalk.synth.tts.Speech` (e.g. real words from `tts.say`) to speak instead of
    the synthetic speech-like signal; the mouth then follows its envelope x phoneme openness.
    With `duration_s=None` the clip lasts as long as the speech; otherwise the speech is cut or
    padded with silence to `duration_s`.
    """
    if speech is not None and duration_s is None:
        duration_s = len(speech.audio) / speech.sample_rate
    if duration_s is None or duration_s <= 0 or fps <= 0:
        raise ValueError("duration_s and fps must be positive")
    if size < 64 or size % 2:
        raise ValueError(f"size must be even and at least 64 (H.264 4:2:0), got {size}")
    num_frames = int(round(duration_s * fps))
    n_audio = int(round(duration_s * SAMPLE_RATE))
    delay = int(round(audio_delay_ms * SAMPLE_RATE / 1000.0))
    # one second beyond the clip (and beyond any negative delay), so the end of the mouth track
    # and the shifted audio never depend on where the speech was cut
    total_s = duration_s + 1.0 + max(0.0, -audio_delay_ms / 1000.0)
    if speech is None:
        speech, envelope = synth_speech(total_s, SAMPLE_RATE, seed)
        openness = vowel_openness(total_s, seed)
    else:
        speech, envelope, openness = _given_speech(speech, total_s)
    if delay >= 0:
        audio = np.concatenate([np.zeros(delay, np.float32), speech])[:n_audio]
    else:
        audio = speech[-delay : -delay + n_audio]
    audio = np.ascontiguousarray(audio, dtype=np.float32)

    times = np.arange(num_frames) / fps
    mouth = _mouth_track(envelope, openness, times)
    closure, blinks = _blink_track(num_frames, fps, seed)
    roll, shift, scale = _head_track(num_frames, fps, size, seed)

    rig = _rig(size)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        frames[i] = _render(rig, GAP_MAX * mouth[i], closure[i], roll[i], shift[i], scale[i])
    return SyntheticClip(
        frames=frames,
        audio=audio,
        fps=float(fps),
        mouth_opening=mouth.astype(np.float32),
        eye_closure=closure.astype(np.float32),
        blink_frames=blinks,
        head_roll_deg=roll.astype(np.float32),
        head_shift_px=shift.astype(np.float32),
        head_scale=scale.astype(np.float32),
        envelope=envelope[: int(round(duration_s * ENVELOPE_RATE))].astype(np.float32),
        audio_delay_ms=float(audio_delay_ms),
    )


def write_clip(clip: SyntheticClip, path: str | Path, crf: int = 18) -> Path:
    """Write the clip as an mp4 (H.264 yuv420p + AAC mono), atomically. Returns the path."""
    from ..media.video_writer import write_video

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, clip.frames, clip.fps, audio=clip.audio, sample_rate=clip.sample_rate, crf=crf)
    return path
