"""Head pose and camera: a rigid fit of the face template to 2-D landmarks over a whole clip.

Conventions (also in docs/CONVENTIONS.md):
- Camera: OpenCV pinhole. x right, y down, z forward (into the scene); pixel (u, v) with the
  origin at the top-left corner of the top-left pixel; principal point at the image centre;
  one focal length `focal_px` (square pixels) shared by every frame of the clip.
- Head frame: the template's (lokitalk.face_model): x to the image right for a frontal face,
  y down, z away from the camera, metres, origin near the centre of the head.
- Pose of frame n: X_cam = R_n @ X_head + t_n. The head is rigid and static in its own frame;
  the camera moves around it with camera-to-head transform [R_n^T | -R_n^T t_n].
- Euler angles (for plots and summaries only): yaw about the head's y axis, pitch about x,
  roll about z, in degrees, from scipy's extrinsic "yxz" convention.

Method: the focal length is found by a golden-section search over the total reprojection error
(perspective makes it observable when the head turns), with a prior for clips where the
error barely depends on it (see PoseConfig); at each focal every frame's pose is solved by
batched Levenberg-Marquardt with Huber weights. Then, at that focal, the template's rigid points
are adapted to the person (regularised towards the template, with its scale kept) and poses are
re-solved, alternating a few times. Poses are smoothed with a zero-phase Savitzky-Golay filter
(symmetric in time, so it adds no lag). `fit_pose_single_reference` is the slow per-frame
reference (scipy least_squares) that tests compare the batched solver against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class PoseConfig:
    focal_min_factor: float = 0.6  # focal search range, in multiples of the image size
    focal_max_factor: float = 6.0
    focal_search_iters: int = 14
    focal_search_frames: int = 48  # focal is searched on a subset spanning the pose range
    # Perspective pins the focal when the head turns and the landmarks are exact (synthetic
    # tests): the error has a clear minimum inside the search range. mediapipe's landmarks on
    # real clips do not: their error falls steadily towards orthography (measured on id01, id07,
    # vox05: 3.1 px at 2.5x the size, 2.6 px at 15x), since the mesh is predicted close to
    # weak-perspective. Then the clip gets the default focal: 2.5 x the image size (a 23 degree
    # field of view, typical of talking-head crops; ER-NeRF uses 1200 px at 450 px).
    default_focal_factor: float = 2.5
    focal_min_gain: float = 0.05  # a fitted focal must beat the near-orthographic end by 5 %
    lm_iters: int = 8
    shape_rounds: int = 2
    shape_prior_weight: float = 4.0  # pull of the adapted shape towards the template
    huber_px: float = 2.0
    smooth_window: int = 7  # frames, odd; 0 or 1 disables
    smooth_order: int = 2


@dataclass(frozen=True)
class PoseFit:
    rotation: np.ndarray  # [N,3,3] head-to-camera
    translation: np.ndarray  # [N,3] metres
    focal_px: float
    focal_source: str  # "fitted" (the landmarks determine it) or "default" (see PoseConfig)
    cx: float
    cy: float
    shape: np.ndarray  # [P,3] the person's rigid points in the head frame
    point_ids: np.ndarray  # [P] landmark ids of `shape`
    reprojection_error_px: float  # mean over frames and points, after smoothing
    per_frame_error_px: np.ndarray  # [N]

    def euler_deg(self) -> np.ndarray:
        return euler_from_rotation(self.rotation)


def euler_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """[N,3,3] -> [N,3] (yaw, pitch, roll) in degrees."""
    return Rotation.from_matrix(rotation).as_euler("yxz", degrees=True)


def project(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
            focal: float, cx: float, cy: float) -> np.ndarray:
    """points [P,3] or [N,P,3], rotation [N,3,3], translation [N,3] -> pixels [N,P,2]."""
    cam = np.matmul(points, rotation.transpose(0, 2, 1)) + translation[:, None, :]
    z = np.maximum(cam[..., 2:3], 1e-6)
    return cam[..., :2] / z * focal + np.array([cx, cy])


def exp_so3(v: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(v.reshape(-1, 3)).as_matrix().reshape(v.shape[:-1] + (3, 3))


def initial_poses(shape: np.ndarray, observed: np.ndarray, focal: float, cx: float, cy: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Scaled-orthographic closed form per frame: a good start for the perspective solve."""
    centred_shape = shape - shape.mean(0)
    obs = observed - np.array([cx, cy])
    obs_mean = obs.mean(1, keepdims=True)
    a = np.einsum("npi,pj->nij", obs - obs_mean, centred_shape)  # [N,2,3]
    # rows of a 2x3 scaled rotation: orthonormalise via SVD of a @ pinv-ish normalisation
    gram = centred_shape.T @ centred_shape
    m = a @ np.linalg.inv(gram)  # [N,2,3] ~ s * R[:2]
    scale = np.linalg.norm(m, axis=2).mean(1)  # [N]
    r12 = m / scale[:, None, None]
    r3 = np.cross(r12[:, 0], r12[:, 1])
    rot = np.concatenate([r12, r3[:, None]], axis=1)
    u, _, vt = np.linalg.svd(rot)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    rot = u @ vt
    depth = focal / scale
    centre = obs_mean[:, 0] / focal * depth[:, None]
    translation = np.concatenate([centre, depth[:, None]], axis=1)
    translation -= np.einsum("nij,j->ni", rot, shape.mean(0))
    return rot, translation


def solve_poses(shape: np.ndarray, observed: np.ndarray, focal: float, cx: float, cy: float,
                rotation: np.ndarray, translation: np.ndarray, *, iters: int = 12,
                huber_px: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched Levenberg-Marquardt over frames with a left-multiplicative rotation update.

    Returns rotation, translation and per-frame mean reprojection error (px).
    """
    n = observed.shape[0]
    lam = np.full(n, 1e-3)
    rotation, translation = rotation.copy(), translation.copy()

    def residual(rot, trans):
        return project(shape, rot, trans, focal, cx, cy) - observed  # [N,P,2]

    def robust_cost(res):
        r = np.linalg.norm(res, axis=2)
        cost = np.where(r <= huber_px, 0.5 * r**2, huber_px * (r - 0.5 * huber_px))
        return cost.sum(1)

    res = residual(rotation, translation)
    cost = robust_cost(res)
    for _ in range(iters):
        rotated = np.matmul(shape, rotation.transpose(0, 2, 1))  # [N,P,3] = R X
        cam = rotated + translation[:, None]
        x, y, z = cam[..., 0], cam[..., 1], np.maximum(cam[..., 2], 1e-6)
        zeros = np.zeros_like(z)
        # gradients of u and v with respect to the camera-space point: [N,P,3] each
        du = np.stack([focal / z, zeros, -focal * x / z**2], -1)
        dv = np.stack([zeros, focal / z, -focal * y / z**2], -1)
        # d(cam)/d(delta rot) = -[R X]_x, so the row a^T(-[Y]_x) equals (Y x a)^T; d(cam)/dt = I
        jac = np.concatenate([
            np.concatenate([np.cross(rotated, du), du], -1),
            np.concatenate([np.cross(rotated, dv), dv], -1),
        ], axis=1)  # [N,2P,6]
        flat_res = np.concatenate([res[..., 0], res[..., 1]], axis=1)  # [N,2P]
        r = np.linalg.norm(res, axis=2)
        w = np.where(r <= huber_px, 1.0, huber_px / np.maximum(r, 1e-9))  # IRLS Huber weights
        w = np.concatenate([w, w], axis=1)
        jw = jac * w[..., None]
        h = np.matmul(jw.transpose(0, 2, 1), jac)
        g = np.matmul(jw.transpose(0, 2, 1), flat_res[..., None])[..., 0]
        damp = lam[:, None, None] * (np.eye(6) * np.maximum(np.diagonal(h, axis1=1, axis2=2)[:, None, :], 1e-9))
        delta = -np.linalg.solve(h + damp, g[..., None])[..., 0]
        new_rot = exp_so3(delta[:, :3]) @ rotation
        new_trans = translation + delta[:, 3:]
        new_res = residual(new_rot, new_trans)
        new_cost = robust_cost(new_res)
        better = new_cost < cost
        rotation = np.where(better[:, None, None], new_rot, rotation)
        translation = np.where(better[:, None], new_trans, translation)
        res = np.where(better[:, None, None], new_res, res)
        cost = np.where(better, new_cost, cost)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    return rotation, translation, np.linalg.norm(res, axis=2).mean(1)


def adapt_shape(template_shape: np.ndarray, observed: np.ndarray, rotation: np.ndarray,
                translation: np.ndarray, focal: float, cx: float, cy: float,
                prior_weight: float, iters: int = 3) -> np.ndarray:
    """Move each rigid point to fit all frames (Gauss-Newton per point, batched over points),
    regularised towards the template; then remove the similarity drift so the head frame and
    metric scale stay the template's."""
    shape = template_shape.copy()
    n = observed.shape[0]
    # prior weight in px^2 per metre^2: comparable to n frames of ~1 px residuals per mm
    prior = prior_weight * n * (focal / translation[:, 2].mean()) ** 2
    for _ in range(iters):
        cam = np.einsum("nij,pj->npi", rotation, shape) + translation[:, None]
        x, y, z = cam[..., 0], cam[..., 1], np.maximum(cam[..., 2], 1e-6)
        dproj = np.zeros(cam.shape[:2] + (2, 3))
        dproj[..., 0, 0] = focal / z
        dproj[..., 0, 2] = -focal * x / z**2
        dproj[..., 1, 1] = focal / z
        dproj[..., 1, 2] = -focal * y / z**2
        jac = np.einsum("npab,nbc->npac", dproj, rotation)  # d(u,v)/dX  [N,P,2,3]
        res = cam[..., :2] / z[..., None] * focal + np.array([cx, cy]) - observed
        h = np.einsum("npai,npaj->pij", jac, jac) + prior * np.eye(3)
        g = np.einsum("npai,npa->pi", jac, res) + prior * (shape - template_shape)
        shape = shape - np.linalg.solve(h, g[..., None])[..., 0]
    return _similarity_align(shape, template_shape)


def _similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotate/translate `source` onto `target` (no scaling: only the drift is removed; the
    scale is pinned to the template by rescaling to its RMS size)."""
    s_mean, t_mean = source.mean(0), target.mean(0)
    s0, t0 = source - s_mean, target - t_mean
    u, _, vt = np.linalg.svd(t0.T @ s0)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1, 1, d]) @ vt
    s0 = s0 @ rot.T
    s0 *= np.sqrt((t0**2).sum() / (s0**2).sum())
    return s0 + t_mean


def savgol_smooth(values: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing along axis 0 (centred: zero phase). Interior samples use the
    centred least-squares polynomial; the first and last half-windows are evaluated on the
    polynomial fitted to the first/last full window (scipy's mode="interp"). Kept in numpy so
    that prepare does not pay scipy.signal's import (~0.9 s)."""
    n, half = len(values), window // 2
    offsets = np.arange(-half, half + 1)
    vander = offsets[:, None] ** np.arange(order + 1)[None, :]  # [W, order+1]
    fit = np.linalg.pinv(vander)  # polynomial coefficients from a window
    flat = values.reshape(n, -1).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(flat, window, axis=0)  # [n-W+1, D, W]
    out = flat.copy()
    out[half:n - half] = windows @ fit[0]  # the fitted polynomial at the centre
    for edge, positions in ((windows[0], offsets[:half]), (windows[-1], offsets[half + 1:])):
        coeffs = edge @ fit.T  # [D, order+1]
        at = (positions[:, None] ** np.arange(order + 1)[None, :]) @ coeffs.T  # [half, D]
        if positions[0] < 0:
            out[:half] = at
        else:
            out[n - half:] = at
    return out.reshape(values.shape)


def smooth_poses(rotation: np.ndarray, translation: np.ndarray, window: int, order: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Zero-phase Savitzky-Golay smoothing: rotations as rotation vectors relative to the clip's
    mean rotation (small angles, so component-wise filtering is well-behaved)."""
    n = rotation.shape[0]
    window = min(window, n if n % 2 else n - 1)
    if window <= order + 1:
        return rotation, translation
    mean_rot = Rotation.from_matrix(rotation).mean()
    relative = (Rotation.from_matrix(rotation) * mean_rot.inv()).as_rotvec()
    relative = savgol_smooth(relative, window, order)
    smoothed_rot = (Rotation.from_rotvec(relative) * mean_rot).as_matrix()
    smoothed_trans = savgol_smooth(translation, window, order)
    return smoothed_rot, smoothed_trans


def fit_head_pose(landmarks_px: np.ndarray, template_vertices: np.ndarray, rigid_ids: np.ndarray,
                  width: int, height: int, config: PoseConfig = PoseConfig()) -> PoseFit:
    """landmarks_px [N,478,2+] -> per-frame head pose, one focal, the person's rigid shape."""
    observed = np.asarray(landmarks_px, np.float64)[:, rigid_ids, :2]
    template_shape = np.asarray(template_vertices, np.float64)[rigid_ids]
    cx, cy = width / 2.0, height / 2.0
    size = float(max(width, height))

    def solve_at(focal: float, shape: np.ndarray, frames: np.ndarray | slice = slice(None)):
        obs = observed[frames]
        rot0, trans0 = initial_poses(shape, obs, focal, cx, cy)
        return solve_poses(shape, obs, focal, cx, cy, rot0, trans0,
                           iters=config.lm_iters, huber_px=config.huber_px)

    def search_focal(shape: np.ndarray, lo: float, hi: float, frames: np.ndarray) -> float:
        # golden-section search on log(focal)
        def cost(log_focal: float) -> float:
            return float(solve_at(np.exp(log_focal), shape, frames)[2].mean())

        a, b = np.log(lo), np.log(hi)
        golden = (np.sqrt(5) - 1) / 2
        c, d = b - golden * (b - a), a + golden * (b - a)
        fc, fd = cost(c), cost(d)
        for _ in range(config.focal_search_iters):
            if fc < fd:
                b, d, fd = d, c, fc
                c = b - golden * (b - a)
                fc = cost(c)
            else:
                a, c, fc = c, d, fd
                d = a + golden * (b - a)
                fd = cost(d)
        return float(np.exp((a + b) / 2))

    shape = template_shape
    # a rough pose for every frame picks the search subset: frames that span the pose range
    rough_rot, _ = initial_poses(shape, observed, size, cx, cy)
    subset = _spanning_frames(rough_rot, config.focal_search_frames)
    lo, hi = config.focal_min_factor * size, config.focal_max_factor * size
    focal = search_focal(shape, lo, hi, subset)
    error_at_focal = solve_at(focal, shape, subset)[2].mean()
    error_at_far_end = solve_at(hi, shape, subset)[2].mean()
    determined = focal < 0.97 * hi and error_at_focal < (1 - config.focal_min_gain) * error_at_far_end
    focal_source = "fitted" if determined else "default"
    if not determined:
        focal = config.default_focal_factor * size
    rotation, translation, _ = solve_at(focal, shape)
    # The person's own shape is adapted at a fixed focal: a free shape can mimic perspective,
    # so the focal is decided with the template only.
    for _ in range(config.shape_rounds):
        shape = adapt_shape(template_shape, observed, rotation, translation, focal, cx, cy,
                            config.shape_prior_weight)
        rotation, translation, _ = solve_poses(shape, observed, focal, cx, cy, rotation, translation,
                                               iters=max(4, config.lm_iters // 2), huber_px=config.huber_px)

    if config.smooth_window > 1:
        rotation, translation = smooth_poses(rotation, translation, config.smooth_window,
                                             config.smooth_order)
    errors = np.linalg.norm(project(shape, rotation, translation, focal, cx, cy) - observed,
                            axis=2).mean(1)
    return PoseFit(rotation=rotation, translation=translation, focal_px=focal, focal_source=focal_source,
                   cx=cx, cy=cy,
                   shape=shape, point_ids=np.asarray(rigid_ids), reprojection_error_px=float(errors.mean()),
                   per_frame_error_px=errors)


def _spanning_frames(rotation: np.ndarray, count: int) -> np.ndarray:
    """Evenly spaced frames plus the most turned ones (perspective cues live in the turns)."""
    n = rotation.shape[0]
    if n <= count:
        return np.arange(n)
    angles = np.abs(euler_from_rotation(rotation) - np.median(euler_from_rotation(rotation), 0))
    extremes = np.argsort(-angles.max(1))[: count // 2]
    even = np.linspace(0, n - 1, count - len(extremes)).round().astype(int)
    return np.unique(np.concatenate([extremes, even]))


def fit_pose_single_reference(shape: np.ndarray, observed: np.ndarray, focal: float, cx: float,
                              cy: float, rotvec0: np.ndarray, translation0: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: one frame, plain least squares over (rotvec, t) with scipy."""
    from scipy.optimize import least_squares

    def residual(params):
        rot = Rotation.from_rotvec(params[:3]).as_matrix()
        cam = shape @ rot.T + params[3:]
        return (cam[:, :2] / cam[:, 2:3] * focal + np.array([cx, cy]) - observed).ravel()

    sol = least_squares(residual, np.concatenate([rotvec0, translation0]), method="lm")
    return Rotation.from_rotvec(sol.x[:3]).as_matrix(), sol.x[3:]
