"""Where each avatar's outer lips sit in the head frame, relative to the face template's, over its first
5 s of training frames (mm: x, y, z).  usage (repo root): python benchmarks/results/session24/mouth_place.py AVATAR_DIR..."""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.face_model import load_face_template
from lokitalk.prepare.signals import align_to_head_frame
t = load_face_template()
ref = t.vertices[t.lips_outer].mean(0)
for d in sys.argv[1:]:
    av = load_avatar(d)
    fr = training_frames(av, 5.0)
    a = align_to_head_frame(av.landmarks[fr].astype(np.float64), t)
    lips = a[:, t.lips_outer].mean(1).mean(0)
    print(Path(d).name, [round(float(v), 2) for v in (lips - ref) * 1000])
