"""Face alignment for priors (lokitalk.model.face_alignment): the blended offset against its slow
reference, a face moved as a whole where the anchors are and nothing far from them, a person's
anchors recovered through the head-frame fit, and a multi-identity model reading the aligned point."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from lokitalk.face_model import load_face_template
from lokitalk.model.face_alignment import (ALIGNMENT_SIGMA_M, ANCHOR_COUNT, alignment_offset,
                                           alignment_offset_reference, anchor_ids, mean_anchor_points)
from lokitalk.model.field import TalkingHead
from lokitalk.model.identity import IdentityParts

from test_identity import batch, micro_prior_config


def template_anchors() -> np.ndarray:
    template = load_face_template()
    return template.vertices[anchor_ids(template)].astype(np.float64)


def test_the_blended_offset_matches_the_per_point_reference():
    anchors = template_anchors()
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 0.003, anchors.shape)
    # points on the face, just off it, and far from it
    x = np.concatenate([anchors[::7] + rng.normal(0, 0.004, anchors[::7].shape),
                        rng.normal(0, 0.05, (30, 3)), rng.normal(0, 0.3, (10, 3))])
    fast = alignment_offset(torch.from_numpy(x).float(), torch.from_numpy(anchors).float(),
                            torch.from_numpy(offsets).float()).double().numpy()
    np.testing.assert_allclose(fast, alignment_offset_reference(x, anchors, offsets), atol=2e-7, rtol=0)


def test_one_offset_everywhere_moves_the_face_by_it_and_nothing_far_away():
    anchors = torch.from_numpy(template_anchors()).float()
    shift = torch.tensor([0.002, -0.003, 0.001])
    offsets = shift.expand_as(anchors)
    # at an anchor its own weight is 1, so the weights sum past 1: the normalised blend is the shift
    torch.testing.assert_close(alignment_offset(anchors, anchors, offsets), offsets, atol=1e-7, rtol=0)
    far = anchors.mean(0) + torch.tensor([[0.25, 0.0, 0.0], [0.0, -0.3, 0.1], [0.0, 0.0, 0.4]])
    assert alignment_offset(far, anchors, offsets).abs().max() < 1e-6 * shift.abs().max()
    # two widths in front of the lips: still within the face's pull, weaker than on it
    lips = anchors[:20].mean(0, keepdim=True)
    front = alignment_offset(lips + torch.tensor([[0.0, 0.0, 2 * ALIGNMENT_SIGMA_M]]), anchors, offsets)
    assert 0 < front[0, 0] <= shift[0] + 1e-9


def test_the_anchors_are_the_outer_lips_then_spread_over_the_face():
    template = load_face_template()
    ids = anchor_ids(template)
    assert len(ids) == len(set(ids.tolist())) == ANCHOR_COUNT
    assert ids[:len(template.lips_outer)].tolist() == template.lips_outer.tolist()
    banned = set(np.concatenate([template.lips_inner, template.left_iris, template.right_iris]).tolist())
    assert not banned & set(ids.tolist())
    # spread: no two of the non-lip anchors closer than 5 mm
    rest = template.vertices[ids[len(template.lips_outer):]]
    gaps = np.linalg.norm(rest[:, None] - rest[None], axis=-1) + np.eye(len(rest))
    assert gaps.min() > 0.005


def test_a_persons_anchors_come_back_through_the_head_frame_fit():
    """Landmarks = the template with the lips 2 mm to one side, seen at a random similarity
    transform each frame (and one untrusted frame of noise): the mean anchors are the template's
    with the lip anchors moved by those 2 mm, whatever the frames' poses and scales."""
    from scipy.spatial.transform import Rotation

    template = load_face_template()
    face = template.vertices.astype(np.float64).copy()
    face[template.lips_outer] += [0.002, 0.0, 0.0]
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(6):
        rotation = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).as_matrix()
        frames.append(rng.uniform(0.8, 1.3) * face @ rotation.T + rng.normal(0, 0.2, 3))
    landmarks = np.stack(frames + [rng.normal(0, 1, face.shape)])
    valid = np.array([True] * 6 + [False])
    points = mean_anchor_points(landmarks, valid, np.arange(7), template)
    expected = face[anchor_ids(template)]
    np.testing.assert_allclose(points, expected, atol=1e-9)


def test_a_model_with_face_alignment_reads_the_aligned_point():
    """The deformation nets of a multi-identity model with face alignment see x + alignment(x):
    their output equals that of the same weights without alignment at the moved point, and the
    total displacement they report is measured from the point as given."""
    torch.manual_seed(0)
    plain_cfg = micro_prior_config()
    aligned_cfg = replace(plain_cfg, identity=replace(plain_cfg.identity, face_alignment=True))
    aligned, plain = TalkingHead(aligned_cfg), TalkingHead(plain_cfg)
    for module in aligned.modules():  # nets that move points (zero-initialised last layers otherwise)
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.3)
    plain.load_state_dict({k: v for k, v in aligned.state_dict().items() if "alignment" not in k})
    anchors = template_anchors()
    target = anchors + np.random.default_rng(1).normal(0, 0.004, anchors.shape)
    aligned.identity.set_alignment(anchors, target)
    points = torch.from_numpy(anchors[::4] + np.random.default_rng(2).normal(0, 0.005, anchors[::4].shape)).float()
    signals = batch()

    def deform(model, x):
        lip, eye, pose, ident = model.frame_signals(signals, torch.device("cpu"))
        return model.deformation(x, lip[None], eye[None], pose[None], ident.deformation)

    moved = points + alignment_offset(points, aligned.identity.alignment_anchors, aligned.identity.alignment_offsets)
    assert (moved - points).abs().max() > 1e-3
    ours, reference = deform(aligned, points), deform(plain, moved)
    torch.testing.assert_close(ours.canonical, reference.canonical, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.offset, ours.canonical - points, atol=1e-7, rtol=0)
    # parts without alignment refuse it; a wrong shape is refused
    with pytest.raises(ValueError, match="no face alignment"):
        IdentityParts(plain_cfg).set_alignment(anchors, target)
    with pytest.raises(ValueError, match="shape"):
        aligned.identity.set_alignment(anchors[:10], target[:10])


def test_the_offset_stays_in_float32_under_bf16_autocast():
    """Training on a GPU runs under bf16 autocast; the expanded squared distances cancel large
    terms and would lose the millimetres in bf16."""
    anchors = torch.from_numpy(template_anchors()).float()
    offsets = torch.full_like(anchors, 0.002)
    x = anchors[::3] + 0.003
    plain = alignment_offset(x, anchors, offsets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = alignment_offset(x, anchors, offsets)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, atol=0, rtol=0)
