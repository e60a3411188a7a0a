"""How far face alignment moves each person's lips (mean of the outer-lip anchors' offsets, mm) and the
median offset of its other anchors, against the mean face of the 15 pretraining clips (all their
training frames, as `pretrain` takes it); id04 and id05 over their first 5 s.
usage (repo root): python benchmarks/results/session24/align_offsets.py"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.train.prior import anchor_points_of, mean_face
pre = [load_avatar(p) for p in sorted(Path('runs/s23/pre').iterdir())]
frames = [training_frames(a, None) for a in pre]
target = mean_face(pre, frames)
for a in pre + [load_avatar('runs/prepare_all/id04_a'), load_avatar('runs/prepare_all/id05_a')]:
    own = anchor_points_of(a, training_frames(a, 5.0))
    d = (target - own) * 1000
    print(a.root.name, 'lips', np.round(d[:20].mean(0), 2), 'rest |d| median', round(float(np.median(np.linalg.norm(d[20:], axis=1))), 2))
