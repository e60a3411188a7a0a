"""AD-NeRF / RAD-NeRF / ER-NeRF dataset interop: conventions, exact round trips, a reader that
follows ER-NeRF's loader conventions (written here, from the conventions, not from their code),
import of a dataset LokiTalk did not write, and bad input."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import conftest
from conftest import assert_clean_failure, consent_for, shared_file
from lokitalk.data.avatar import load_avatar
from lokitalk.face_model import load_face_template
from lokitalk.interop import nerf_format as nf
from lokitalk.interop.export_nerf import export_nerf
from lokitalk.interop.import_nerf import import_nerf
from lokitalk.media.audio import load_audio, write_wav
from lokitalk.prepare.masks import Region
from lokitalk.prepare.pose import project
from lokitalk.prepare.runner import Reporter

QUIET = Reporter(quiet=True)
F = np.diag([1.0, -1.0, -1.0])


def random_poses(n, seed=0):
    rng = np.random.default_rng(seed)
    rotation = Rotation.from_euler("yxz", rng.uniform(-40, 40, (n, 3)), degrees=True).as_matrix()
    translation = np.column_stack([rng.uniform(-0.05, 0.05, (n, 2)), rng.uniform(0.4, 0.9, n)])
    return rotation, translation


# ----------------------------------------------------------------------------- conventions


def test_pose_conversion_is_an_exact_inverse():
    rotation, translation = random_poses(50)
    matrices = nf.nerf_transforms_from_pose(rotation, translation)
    back_r, back_t = nf.pose_from_nerf_transforms(matrices)
    assert np.abs(back_r - rotation).max() == 0.0  # sign flips and transposes only
    assert np.abs(back_t - translation).max() < 1e-14
    assert np.allclose(matrices[:, 3], [0, 0, 0, 1])


def test_a_frontal_camera_in_their_convention():
    # head 60 cm straight in front of the camera, facing it
    m = nf.nerf_transforms_from_pose(np.eye(3)[None], np.array([[0.0, 0.0, 0.6]]))[0]
    # their world: the head with y up and z out of the face, so the camera sits on +z
    assert np.allclose(m[:3, 3], [0, 0, 0.6])
    # the camera looks down its own -z axis, i.e. from the camera towards the head
    assert np.allclose(m[:3, :3] @ [0, 0, -1], [0, 0, -1])
    # its +y is up (the top of the head), its +x is the image right
    assert np.allclose(m[:3, :3] @ [0, 1, 0], [0, 1, 0]) and np.allclose(m[:3, :3] @ [1, 0, 0], [1, 0, 0])
    # a point on top of the head (our y is down) is at their +y
    top_ours = np.array([0.0, -0.1, 0.0])
    assert (F @ top_ours)[1] > 0


def test_their_tracker_projection_matches_ours():
    """AD-NeRF's face tracker projects a world point with world-to-camera [R|t] as
    u = -f X/Z + cx, v = f Y/Z + cy (Z < 0: the camera looks down -z), and its transform_matrix
    is the inverse of that [R|t]. Our projection of the same head point must give the same pixel."""
    rotation, translation = random_poses(20, seed=1)
    points = np.random.default_rng(2).uniform(-0.08, 0.08, (30, 3))  # head frame, ours
    f, cx, cy = 560.0, 112.0, 112.0
    ours = project(points, rotation, translation, f, cx, cy)
    for n, m in enumerate(nf.nerf_transforms_from_pose(rotation, translation)):
        world_to_cam = np.linalg.inv(m)
        cam = (F @ points.T).T @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]  # their world = F x ours
        assert (cam[:, 2] < 0).all()
        theirs = np.column_stack([-f * cam[:, 0] / cam[:, 2] + cx, f * cam[:, 1] / cam[:, 2] + cy])
        assert np.abs(theirs - ours[n]).max() < 1e-9


def ngp_pose(matrix, scale):
    """ER-NeRF's loader convention, restated: camera y/z axes negated, world axes relabelled
    (x, y, z) -> (y, z, x), camera position scaled."""
    m = np.asarray(matrix, float)
    out = np.eye(4)
    for new_row, old_row in enumerate((1, 2, 0)):
        out[new_row, :3] = m[old_row, :3] * [1, -1, -1]
        out[new_row, 3] = m[old_row, 3] * scale
    return out


def test_their_rays_through_our_projection_hit_the_point():
    """Their renderer casts the ray through pixel (u, v) as o + s * R_ngp ((u-cx)/f, (v-cy)/f, 1)
    (pixel centres at i + 0.5, like ours). Through our projection of a head point it must pass
    that point, in their scaled world, in front of the camera."""
    rotation, translation = random_poses(10, seed=3)
    points = np.random.default_rng(4).uniform(-0.08, 0.08, (5, 3))
    f, cx, cy, scale = 1200.0, 225.0, 225.0, 4.0
    uv = project(points, rotation, translation, f, cx, cy)
    for n, m in enumerate(nf.nerf_transforms_from_pose(rotation, translation)):
        pose = ngp_pose(m, scale)
        assert np.allclose(pose, nf.nerf_to_ngp(m, scale))
        for (u, v), p in zip(uv[n], points):
            target = (F @ p)[[1, 2, 0]] * scale
            d = pose[:3, :3] @ np.array([(u - cx) / f, (v - cy) / f, 1.0])
            s = (target - pose[:3, 3]) @ d / (d @ d)
            assert s > 0 and np.linalg.norm(pose[:3, 3] + s * d - target) < 1e-9


def test_68_point_map_has_the_ibug_layout():
    weights = nf.landmark_map_68()
    assert weights.shape == (68, 478) and np.allclose(weights.sum(1), 1) and (weights >= 0).all()
    template = load_face_template()
    p = nf.landmarks_68(template.vertices)  # template: x right, y down, symmetric
    jaw = p[:17]
    assert (np.diff(jaw[:, 0]) > 0).all() and jaw[:, 1].argmax() == 8  # left to right, chin lowest
    pairs = [(0, 16), (17, 26), (21, 22), (36, 45), (39, 42), (31, 35), (48, 54), (60, 64), (59, 55)]
    for a, b in pairs:  # mirror images of each other
        assert abs(p[a, 0] + p[b, 0]) < 1e-4 and abs(p[a, 1] - p[b, 1]) < 1e-4
    assert np.abs(p[[8, 27, 30, 33, 51, 57, 62, 66], 0]).max() < 1e-4  # on the midline
    assert (p[17:27, 1] < p[36:48, 1].min()).all()  # brows above the eyes
    assert p[27:31, 1].tolist() == sorted(p[27:31, 1])  # the bridge runs down to the tip
    assert p[51, 1] < p[62, 1] < p[66, 1] < p[57, 1]  # outer top lip, inner lips, outer bottom lip


def test_parsing_colours_as_their_scripts_read_them(tmp_path):
    labels = np.repeat(np.arange(len(Region), dtype=np.uint8), 4).reshape(1, -1).repeat(3, 0)
    path = tmp_path / "0.png"
    cv2.imwrite(str(path), nf.parsing_from_labels(labels))
    seg = cv2.imread(str(path))  # what their scripts do, then compare channel by channel
    head = (seg[..., 0] == 255) & (seg[..., 1] == 0) & (seg[..., 2] == 0)
    neck = (seg[..., 0] == 0) & (seg[..., 1] == 255) & (seg[..., 2] == 0)
    torso = (seg[..., 0] == 0) & (seg[..., 1] == 0) & (seg[..., 2] == 255)
    background = (seg == 255).all(-1)
    assert (head == np.isin(labels, [Region.HEAD, Region.FACE, Region.MOUTH, Region.EYES])).all()
    assert (neck == (labels == Region.NECK)).all() and (torso == (labels == Region.TORSO)).all()
    assert (background == (labels == Region.BACKGROUND)).all()
    assert tuple(cv2.cvtColor(seg, cv2.COLOR_BGR2RGB)[0, -1]) == (0, 0, 255)  # head looks blue
    assert (nf.regions_from_parsing(seg) == nf.coarse_regions(labels)).all()


def test_au45_scale_and_direction():
    ratio = np.array([[0.25, 0.25]] * 9 + [[0.0, 0.0], [0.125, 0.125], [0.3, 0.3]])
    au, open_level = nf.au45_from_eye_ratio(ratio)
    assert open_level == pytest.approx(0.25)
    assert au[0] == 0 and au[9] == 5.0 and au[10] == pytest.approx(2.5) and au[11] == 0
    assert au.min() >= 0 and au.max() <= nf.AU45_MAX


def test_deepspeech_shaped_features():
    x = np.random.default_rng(5).normal(size=(7, 32, 80)).astype(np.float16)
    ds = nf.deepspeech_shaped(x)
    assert ds.shape == (7, 16, 29) and ds.dtype == np.float32
    assert np.allclose(ds[:, 0, 0], x[:, 0:2, 0:3].astype(np.float32).mean((1, 2)), atol=1e-6)
    assert np.allclose(nf.deepspeech_shaped(np.full((2, 32, 80), -3.0)), -3.0)


# ----------------------------------------------------------------------------- prepared clips


def run_cli(args, capsys):
    """(exit code, stderr) of `lokitalk ARGS`."""
    code, _, err = conftest.run_cli(args, capsys)
    return code, err


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    pytest.importorskip("mediapipe")
    from lokitalk.prepare.pipeline import prepare
    from lokitalk.synth import make_talking_clip, write_clip

    root = tmp_path_factory.mktemp("interop_synthetic")
    clip = make_talking_clip(duration_s=4, size=160, seed=0)
    video = write_clip(clip, root / "clip.mp4")
    consent_for(video)
    prepare(video, root / "avatar", reporter=QUIET)
    return clip, root / "avatar"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    pytest.importorskip("mediapipe")
    from lokitalk.prepare.pipeline import prepare

    video = shared_file("videos/vox07_a.mp4")  # skips cleanly without ../shared/data
    root = tmp_path_factory.mktemp("interop_real")
    prepare(video, root / "avatar", reporter=QUIET,
            consent=consent_for(video, root / "clip.consent.json", subject="third-party research clip vox07_a"))
    return root / "avatar"


def stack(avatar, kind):
    read = {"labels": avatar.labels, "alpha": avatar.alpha}[kind]
    return np.stack([read(i) for i in range(avatar.num_frames)])


def assert_exact_round_trip(original_dir: Path, back_dir: Path) -> dict:
    a, b = load_avatar(original_dir), load_avatar(back_dir)
    errors = {"rotation": float(np.abs(a.rotation - b.rotation).max()),
              "translation_m": float(np.abs(a.translation - b.translation).max())}
    assert errors["rotation"] <= 1e-5 and errors["translation_m"] <= 1e-5, errors
    assert a.camera == b.camera
    assert json.loads((back_dir / "camera.json").read_text())["focal_source"] == \
        json.loads((original_dir / "camera.json").read_text())["focal_source"]
    assert a.split.train.tolist() == b.split.train.tolist() and a.split.test.tolist() == b.split.test.tolist()
    assert (stack(a, "labels") == stack(b, "labels")).all()
    assert (stack(a, "alpha") == stack(b, "alpha")).all()
    for name in ("eye_ratio", "mouth_opening", "lip_feature", "blinks", "landmarks", "valid", "audio_features"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("neutral", "components", "point_ids"):
        assert np.array_equal(getattr(a.lip_basis, name), getattr(b.lip_basis, name)), name
    assert a.audio_spec == b.audio_spec
    for name in ("audio.wav", "background.png", "background_unseen.png", "frames/000000.jpg",
                 f"frames/{a.num_frames - 1:06d}.jpg"):
        assert (original_dir / name).read_bytes() == (back_dir / name).read_bytes(), name
    pose_a, pose_b = np.load(original_dir / "pose.npz"), np.load(back_dir / "pose.npz")
    for name in ("euler_deg", "reprojection_error_px", "shape", "shape_ids"):
        assert np.array_equal(pose_a[name], pose_b[name]), name
    assert np.array_equal(np.load(original_dir / "signals.npz")["head_landmarks"],
                          np.load(back_dir / "signals.npz")["head_landmarks"])
    summary = json.loads((back_dir / "summary.json").read_text())
    assert summary["imported_from"]["extras"] == "used"
    print(f"round trip {original_dir.parent.name}: max |dR| {errors['rotation']:.2e}, "
          f"max |dt| {errors['translation_m']:.2e} m")
    return errors


def test_round_trip_of_the_synthetic_subject_through_the_cli(synthetic, tmp_path, capsys):
    _, avatar = synthetic
    code, err = run_cli(["export-nerf", avatar, "--out", tmp_path / "nerf"], capsys)
    assert code == 0, err
    consent_for(tmp_path / "nerf" / "aud.wav")
    code, err = run_cli(["import-nerf", tmp_path / "nerf", "--out", tmp_path / "back", "--quiet"], capsys)
    assert code == 0, err
    assert_exact_round_trip(avatar, tmp_path / "back")


def test_round_trip_of_a_real_clip(real, tmp_path):
    export_nerf(real, tmp_path / "nerf")
    consent_for(tmp_path / "nerf" / "aud.wav")
    import_nerf(tmp_path / "nerf", tmp_path / "back", reporter=QUIET)
    assert_exact_round_trip(real, tmp_path / "back")


# ----------------------------------------------------------------------------- their loader's view


def read_like_er_nerf(root: Path) -> dict:
    """A minimal reader of the conventions ER-NeRF's loader relies on; fails loudly on anything
    it would trip over. Returns what a trainer would get."""
    out = {"frames": {}}
    aud = {name: np.load(root / name) for name in ("aud_ds.npy", "aud.npy")}
    with open(root / "au.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]  # pandas keeps OpenFace's leading spaces in the names
    assert " AU45_r" in header
    au = np.array([float(r[header.index(" AU45_r")]) for r in rows[1:]])
    bc = cv2.imread(str(root / "bc.jpg"), cv2.IMREAD_UNCHANGED)
    for split in ("train", "val"):
        transform = json.loads((root / f"transforms_{split}.json").read_text())
        h = int(transform["h"]) if "h" in transform else int(transform["cy"]) * 2
        w = int(transform["w"]) if "w" in transform else int(transform["cx"]) * 2
        assert int(transform["cy"]) * 2 == h and int(transform["cx"]) * 2 == w  # the fallback agrees
        f, cx, cy = transform["focal_len"], transform["cx"], transform["cy"]
        assert bc.shape[:2] == (h, w)
        for frame in transform["frames"]:
            i, a = frame["img_id"], frame["aud_id"]
            assert isinstance(i, int) and isinstance(a, int)
            pose = ngp_pose(np.array(frame["transform_matrix"], np.float32), scale=4.0)
            gt = cv2.imread(str(root / "gt_imgs" / f"{i}.jpg"), cv2.IMREAD_UNCHANGED)
            torso = cv2.imread(str(root / "torso_imgs" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
            parsing = cv2.imread(str(root / "parsing" / f"{i}.png"))
            ori = cv2.imread(str(root / "ori_imgs" / f"{i}.jpg"))
            assert gt.shape == (h, w, 3) and torso.shape == (h, w, 4) and parsing.shape == (h, w, 3)
            assert ori.shape == (h, w, 3)
            codes = np.unique(parsing.astype(np.int32) @ [1 << 16, 1 << 8, 1])  # one int per colour
            assert set(codes.tolist()) <= {255 << 16, 255 << 8, 255, (1 << 24) - 1}  # their 4 BGR colours
            lms = np.loadtxt(root / "ori_imgs" / f"{i}.lms")
            assert lms.shape == (68, 2)
            for name, feats in aud.items():
                assert feats.shape[1:] == (16, 29) and a < feats.shape[0], name
            assert i < len(au)
            out["frames"][i] = {"split": split, "pose": pose, "lms": lms, "au45": au[i],
                                "torso_alpha": torso[..., 3], "parsing": parsing}
        out["intrinsics"] = (f, cx, cy, h, w)
    out["aud_frames"] = {name: feats.shape[0] for name, feats in aud.items()}
    return out


def test_an_export_opens_with_an_er_nerf_convention_reader(synthetic, tmp_path):
    _, avatar_dir = synthetic
    avatar = load_avatar(avatar_dir)
    export_nerf(avatar_dir, tmp_path / "nerf")
    data = read_like_er_nerf(tmp_path / "nerf")
    n = avatar.num_frames
    assert sorted(data["frames"]) == list(range(n)) and set(data["aud_frames"].values()) == {n}
    assert [i for i, fr in data["frames"].items() if fr["split"] == "val"] == avatar.split.test.tolist()
    f, cx, cy, h, w = data["intrinsics"]
    assert (f, cx, cy, h, w) == (avatar.camera.focal_px, avatar.camera.cx, avatar.camera.cy,
                                 avatar.camera.height, avatar.camera.width)
    # AU45: 0..5, and larger while our detected blinks close the eyes
    au = np.array([data["frames"][i]["au45"] for i in range(n)])
    assert au.min() >= 0 and au.max() <= 5
    assert len(avatar.blinks) >= 1
    closed = np.zeros(n, bool)
    for a, b in avatar.blinks:
        closed[a:b + 1] = True
    assert au[closed].max() > 2.0 > np.median(au[~closed])  # a blink saturates ER-NeRF's clip(AU45, 0, 2)
    assert au[closed].mean() > au[~closed].mean() + 1.5
    # RAD-NeRF reads the eye signal from the 68 points instead: the eye polygons' area shrinks
    def eye_area(lms):
        x, y = lms[:, 0], lms[:, 1]
        return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    area = np.array([eye_area(data["frames"][i]["lms"][36:42]) + eye_area(data["frames"][i]["lms"][42:48])
                     for i in range(n)])
    assert area[closed].mean() < 0.6 * np.median(area[~closed])
    nose = load_face_template().vertices[4].astype(np.float64)  # head frame, metres
    for i in (0, n // 2, n - 1):
        frame = data["frames"][i]
        labels = avatar.labels(i)
        # their rows are lms[:, 1] and columns lms[:, 0]: the lips box must hold our mouth region
        lms = frame["lms"]
        rows, cols = lms[48:60, 1], lms[48:60, 0]
        mouth_r, mouth_c = np.nonzero(labels == Region.MOUTH)
        inside = (mouth_r >= rows.min() - 1) & (mouth_r <= rows.max() + 1) & \
                 (mouth_c >= cols.min() - 1) & (mouth_c <= cols.max() + 1)
        assert inside.mean() > 0.9
        # the torso image covers torso and neck only
        assert ((frame["torso_alpha"] > 0) == np.isin(labels, [Region.TORSO, Region.NECK])).all()
        # the ray their renderer casts through our landmark pixel passes the head point there
        pose = frame["pose"]
        u, v = project(nose, avatar.rotation[i:i + 1], avatar.translation[i:i + 1], f, cx, cy)[0, 0]
        target = (F @ nose)[[1, 2, 0]] * 4.0
        d = pose[:3, :3] @ np.array([(u - cx) / f, (v - cy) / f, 1.0])
        s = (target - pose[:3, 3]) @ d / (d @ d)
        assert s > 0 and np.linalg.norm(pose[:3, 3] + s * d - target) < 1e-4  # float32 poses


# ----------------------------------------------------------------------------- a dataset we did not write


def write_foreign_dataset(root: Path, avatar_dir: Path, clip, unit_scale: float = 10.0) -> dict:
    """A dataset written the way their scripts do, independently of export-nerf: re-encoded
    frames, poses built column by column from the camera's geometry (in decimetres, like their
    tracker before its /10), parsing in their colours, OpenFace-style au.csv from the subject's
    true eye closure, stereo 22.05 kHz aud.wav, no bc.jpg, no sidecar."""
    avatar = load_avatar(avatar_dir)
    n = avatar.num_frames
    (root / "ori_imgs").mkdir(parents=True)
    (root / "parsing").mkdir()
    colour = {Region.BACKGROUND: (255, 255, 255), Region.TORSO: (0, 0, 255), Region.NECK: (0, 255, 0)}
    lms = nf.landmarks_68(avatar.landmarks)
    for i in range(n):
        cv2.imwrite(str(root / "ori_imgs" / f"{i}.jpg"), cv2.cvtColor(avatar.frame(i), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        np.savetxt(root / "ori_imgs" / f"{i}.lms", lms[i], "%f")
        labels = avatar.labels(i)
        parsing = np.zeros(labels.shape + (3,), np.uint8)
        parsing[:] = (255, 0, 0)  # head, unless below
        for region, bgr in colour.items():
            parsing[labels == region] = bgr
        cv2.imwrite(str(root / "parsing" / f"{i}.png"), parsing)
    matrices = []
    for r, t in zip(avatar.rotation, avatar.translation):
        right, down, forward = r.T[:, 0], r.T[:, 1], r.T[:, 2]  # camera axes in our head frame
        centre = -r.T @ t
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2] = F @ right, F @ -down, F @ -forward  # OpenGL camera axes
        m[:3, 3] = F @ centre * unit_scale
        matrices.append(m)
    split = int(n * 10 / 11)
    for name, ids in (("train", range(split)), ("val", range(split, n))):
        transform = {"focal_len": avatar.camera.focal_px, "cx": avatar.camera.cx, "cy": avatar.camera.cy,
                     "frames": [{"img_id": i, "aud_id": i, "transform_matrix": matrices[i].tolist()} for i in ids]}
        (root / f"transforms_{name}.json").write_text(json.dumps(transform))
    au = 5.0 * clip.eye_closure[:n]
    lines = ["frame, face_id, timestamp, confidence, success, AU01_r, AU45_r"]
    lines += [f"{i + 1}, 0, {i / 25:.3f}, 0.98, 1, 0.00, {au[i]:.2f}" for i in range(n)]
    (root / "au.csv").write_text("\n".join(lines) + "\n")
    audio = load_audio(avatar_dir / "audio.wav", 22050)
    write_wav(root / "aud.wav", np.column_stack([audio, audio]), 22050)
    np.save(root / "aud_ds.npy", np.random.default_rng(0).normal(size=(n, 16, 29)).astype(np.float32))
    return {"matrices": np.array(matrices), "split": split}


def test_import_of_a_dataset_lokitalk_did_not_write(synthetic, tmp_path):
    clip, avatar_dir = synthetic
    written = write_foreign_dataset(tmp_path / "foreign", avatar_dir, clip)
    consent_for(tmp_path / "foreign" / "aud.wav")
    summary = import_nerf(tmp_path / "foreign", tmp_path / "avatar", reporter=QUIET)
    original, imported = load_avatar(avatar_dir), load_avatar(tmp_path / "avatar")
    n = original.num_frames
    assert imported.num_frames == n and imported.split.train.tolist() == list(range(written["split"]))
    # poses: exactly what the file says, in the file's units (decimetres here)
    assert np.abs(imported.rotation - original.rotation).max() < 1e-5
    assert np.abs(imported.translation - 10.0 * original.translation).max() < 1e-5
    # the camera as written (prepare's crop size itself can differ by a few px between runs: 158 or 160)
    assert imported.camera.focal_px == original.camera.focal_px
    assert imported.camera.width == original.camera.width
    # ... and they agree with our landmarks on these frames (scale does not change a projection)
    assert summary["reprojection_error_px"] < 2.0
    # regions: head/neck/torso/background as their parsing says, face/mouth/eyes from our landmarks
    labels = stack(imported, "labels")
    assert (nf.coarse_regions(labels) == nf.coarse_regions(stack(original, "labels"))).mean() > 0.99
    assert all((labels == r).any() for r in (Region.FACE, Region.MOUTH, Region.EYES))
    # derived signals: our landmarker on their (re-encoded) frames, against the subject's truth
    assert np.abs(imported.landmarks[..., :2] - original.landmarks[..., :2]).mean() < 1.0
    assert np.corrcoef(imported.eye_ratio.mean(1), -clip.eye_closure)[0, 1] > 0.85
    assert np.corrcoef(imported.mouth_opening, clip.mouth_opening)[0, 1] > 0.75
    assert imported.lip_feature.shape == original.lip_feature.shape
    assert any(abs(a - ta) <= 2 for a, _ in imported.blinks for ta, _ in clip.blink_frames)
    assert imported.audio_features.shape == original.audio_features.shape
    assert abs(len(imported.audio()) - len(original.audio())) == 0
    info = summary["imported_from"]
    assert info["extras"] == "none" and info["matte"] == "parsing"
    assert info["background"] == "estimated from the frames"
    assert info["lms_agreement_px"] < 1.5 and info["au45_vs_eye_closure_corr"] > 0.5
    assert (tmp_path / "avatar" / "contact_sheet.png").exists()


# ----------------------------------------------------------------------------- bad input


def tiny_dataset(root: Path, n: int = 4, size: int = 64) -> Path:
    (root / "ori_imgs").mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / "ori_imgs" / f"{i}.jpg"), np.full((size, size, 3), 40 * i, np.uint8))
    matrices = nf.nerf_transforms_from_pose(np.tile(np.eye(3), (n, 1, 1)), np.tile([0, 0, 0.6], (n, 1)))
    for name, ids in (("train", range(n - 1)), ("val", range(n - 1, n))):
        (root / f"transforms_{name}.json").write_text(json.dumps({
            "focal_len": 150.0, "cx": size / 2, "cy": size / 2,
            "frames": [{"img_id": i, "aud_id": i, "transform_matrix": matrices[i].tolist()} for i in ids]}))
    write_wav(root / "aud.wav", np.zeros(16000, np.float32))
    consent_for(root / "aud.wav")
    return root


def test_bad_datasets_fail_with_one_line_and_leave_nothing(tmp_path, capsys):
    out = tmp_path / "avatar"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a dataset")
    assert_clean_failure(*run_cli(["import-nerf", a_file, "--out", out], capsys), out, "not a dataset folder")
    assert_clean_failure(*run_cli(["import-nerf", tmp_path / "nope", "--out", out], capsys), out, "no such")

    ds = tiny_dataset(tmp_path / "no_val")
    (ds / "transforms_val.json").unlink()
    assert_clean_failure(*run_cli(["import-nerf", ds, "--out", out], capsys), out, "transforms_val.json")

    ds = tiny_dataset(tmp_path / "missing_image")
    (ds / "ori_imgs" / "2.jpg").unlink()
    assert_clean_failure(*run_cli(["import-nerf", ds, "--out", out], capsys), out, "ori_imgs/2.jpg")

    ds = tiny_dataset(tmp_path / "gap")
    val = json.loads((ds / "transforms_val.json").read_text())
    val["frames"][0]["img_id"] = 7
    (ds / "transforms_val.json").write_text(json.dumps(val))
    assert_clean_failure(*run_cli(["import-nerf", ds, "--out", out], capsys), out, "not 3")

    ds = tiny_dataset(tmp_path / "short_au")
    (ds / "au.csv").write_text("frame, AU45_r\n1, 0.1\n")
    assert_clean_failure(*run_cli(["import-nerf", ds, "--out", out], capsys), out, "1 rows for 4 frames")

    ds = tiny_dataset(tmp_path / "not_rigid")
    train = json.loads((ds / "transforms_train.json").read_text())
    train["frames"][1]["transform_matrix"][0][0] = 3.0
    (ds / "transforms_train.json").write_text(json.dumps(train))
    assert_clean_failure(*run_cli(["import-nerf", ds, "--out", out], capsys), out, "not a rotation")

    # found only while the frames are read: the runner removes what it started
    ds = tiny_dataset(tmp_path / "odd_size")
    cv2.imwrite(str(ds / "ori_imgs" / "2.jpg"), np.zeros((32, 64, 3), np.uint8))
    assert_clean_failure(*run_cli(["import-nerf", ds, "--out", out], capsys), out, "64x32")


def test_import_needs_a_consent_record_for_aud_wav(tmp_path, capsys):
    out = tmp_path / "avatar"
    ds = tiny_dataset(tmp_path / "no_consent")
    (ds / "aud.wav.consent.json").unlink()
    assert_clean_failure(*run_cli(["import-nerf", ds, "--out", out], capsys), out, "no consent record",
                         "aud.wav")


def test_bad_export_requests(synthetic, tmp_path, capsys):
    _, avatar = synthetic
    target = tmp_path / "nerf"
    assert_clean_failure(*run_cli(["export-nerf", tmp_path / "nope", "--out", target], capsys), target,
                         "not a prepared avatar")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    code, err = run_cli(["export-nerf", avatar, "--out", busy], capsys)
    assert code not in (0, None) and err.startswith("error: ") and "exists" in err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"] and not (tmp_path / "busy.partial").exists()
