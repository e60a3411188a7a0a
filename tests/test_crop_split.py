import numpy as np
import pytest

from lokitalk.prepare.crop import CropConfig, choose_crop
from lokitalk.prepare.split import Split, temporal_split


def boxes_around(cx, cy, size, n=10, wobble=5.0, seed=0):
    rng = np.random.default_rng(seed)
    c = np.stack([cx + rng.uniform(-wobble, wobble, n), cy + rng.uniform(-wobble, wobble, n)], 1)
    return np.concatenate([c - size / 2, c + size / 2], 1)


@pytest.mark.parametrize("width,height,cx,cy,size", [(1920, 1080, 900, 400, 220), (256, 256, 128, 110, 120),
                                                    (844, 844, 420, 380, 90), (720, 1280, 360, 500, 200),
                                                    (640, 480, 570, 60, 100)])
def test_crop_is_a_square_inside_the_frame_containing_every_face(width, height, cx, cy, size):
    boxes = boxes_around(cx, cy, size)
    crop = choose_crop(boxes, width, height)
    assert 0 <= crop.x0 and crop.x0 + crop.side <= width
    assert 0 <= crop.y0 and crop.y0 + crop.side <= height
    inside = (boxes[:, 0] >= crop.x0 - 1) & (boxes[:, 2] <= crop.x0 + crop.side + 1)
    inside &= (boxes[:, 1] >= crop.y0 - 1) & (boxes[:, 3] <= crop.y0 + crop.side + 1)
    assert inside.all()
    assert crop.out_size <= 512 and crop.out_size % 2 == 0 and crop.out_size <= crop.side
    image = np.zeros((height, width, 3), np.uint8)
    assert crop.apply(image).shape == (crop.out_size, crop.out_size, 3)


def test_crop_keeps_about_three_face_sizes_and_drops_below_the_face():
    crop = choose_crop(boxes_around(960, 400, 200, wobble=0), 1920, 1080)
    assert crop.side == pytest.approx(600, abs=2)
    assert crop.y0 + crop.side / 2 > 400  # the centre is below the face: neck and shoulders in
    assert crop.out_size == 512


def test_crop_ignores_missing_boxes_and_maps_back_to_source():
    boxes = boxes_around(300, 300, 100)
    boxes[3] = np.nan
    crop = choose_crop(boxes, 600, 600, CropConfig(max_size=150))
    out_pt = np.array([[10.0, 20.0]])
    src = crop.to_source(out_pt)
    np.testing.assert_allclose((src - [crop.x0, crop.y0]) * crop.scale, out_pt)


def test_split_holds_out_the_last_tenth_contiguously():
    split = temporal_split(1499, 0.1)
    assert len(split.test) == 150 and split.test[-1] == 1498
    assert np.all(np.diff(split.test) == 1)
    assert split.train.max() < split.test.min()
    assert Split.from_json(split.to_json()).test.tolist() == split.test.tolist()
    with pytest.raises(ValueError):
        temporal_split(5, 0.9, gap=1)
