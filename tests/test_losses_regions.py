"""Region-weighted photometric loss against a per-ray loop."""

import torch

from lokitalk.prepare.masks import Region
from lokitalk.train.losses import attention_loss, photometric_loss


def test_photometric_loss_weights_mouth_and_eye_rays_like_a_per_ray_loop():
    gen = torch.Generator().manual_seed(0)
    rgb, target = torch.rand(64, 3, generator=gen), torch.rand(64, 3, generator=gen)
    labels = torch.randint(0, 7, (64,), generator=gen)
    num = den = 0.0
    for i in range(64):
        w = 1.0 + (2.0 if labels[i] == Region.MOUTH else 0.0) + (3.0 if labels[i] == Region.EYES else 0.0)
        num += w * float(((rgb[i] - target[i]) ** 2).sum())
        den += 3 * w
    got = photometric_loss(rgb, target, labels, mouth_weight=2.0, eye_weight=3.0)
    assert abs(float(got) - num / den) < 1e-6
    # an eye error costs more with the eye weight than without it
    eye = labels == Region.EYES
    worse = rgb.clone()
    worse[eye] += 0.3
    gain_weighted = photometric_loss(worse, target, labels, 2.0, 3.0) - got
    gain_plain = photometric_loss(worse, target, labels, 2.0, 0.0) - photometric_loss(rgb, target, labels, 2.0, 0.0)
    assert float(gain_weighted) > 1.5 * float(gain_plain) > 0


def test_attention_loss_ties_the_lips_to_the_mouth_or_to_the_lower_face_where_the_person_is():
    labels = torch.tensor([Region.MOUTH, Region.FACE, Region.FACE, Region.NECK, Region.BACKGROUND, Region.EYES])
    speech = torch.tensor([True, True, False, True, True, False])  # the lower face, as drawn
    lip = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])  # attention on the mouth, chin and jaw
    maps = {"lip": lip}
    # mouth only: the chin and jaw rays (1 and 3) are errors
    assert abs(float(attention_loss(maps, labels)) - 2 / 6) < 1e-6
    # lower face: no error; the background ray (4) asks for nothing although the mask covers it
    assert float(attention_loss(maps, labels, speech)) == 0.0
    assert abs(float(attention_loss({"lip": torch.ones(6)}, labels, speech)) - 3 / 6) < 1e-6


def test_a_free_neck_asks_the_torso_attention_for_nothing_on_the_neck_band_only():
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 7, (200,), generator=gen)
    torso = torch.rand(200, generator=gen, requires_grad=True)
    maps = {"torso": torso}
    values = torso.detach()
    neck = labels == Region.NECK
    wanted = ((labels == Region.NECK) | (labels == Region.TORSO)).float()
    # the default: the band asks for 1, like the torso
    default = attention_loss(maps, labels).detach()
    assert abs(float(default) - float(((values - wanted) ** 2).mean())) < 1e-6
    # free: the mean over the other rays, and no pull at all on the band's rays
    free = attention_loss(maps, labels, free_neck=True)
    reference = sum(float((values[i] - wanted[i]) ** 2) for i in range(200) if not neck[i]) / int((~neck).sum())
    assert abs(float(free.detach()) - reference) < 1e-6
    free.backward()
    assert neck.any() and float(torso.grad[neck].abs().max()) == 0.0 and float(torso.grad[~neck].abs().max()) > 0
