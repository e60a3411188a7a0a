# Re-render both id01 models' blink pairs and print the rendered eye ratios per frame (repo root):
#   python benchmarks/results/session24/blink_check.py runs/s24/rvg_region/id01_a_region_s0 runs/s24/rvg_global/id01_a_global_s0
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from blink_response import render_blink_pairs, rendered_eye_ratio
from lokitalk.data.avatar import load_avatar
av = load_avatar('runs/prepare_all/id01_a')
for m in sys.argv[1:]:
    pairs = render_blink_pairs(Path(m), av, 12, 'cpu')
    o, c = rendered_eye_ratio(pairs['open']), rendered_eye_ratio(pairs['closed'])
    print(m, 'open', np.round(o, 4).tolist(), 'closed', np.round(c, 4).tolist(),
          'amp', round(float((o - c).mean() / (pairs['commanded_open'].mean() - pairs['commanded_closed'].mean())), 4), flush=True)
    np.save(f'/tmp/s24/blink_open_{Path(m).name}.npy', pairs['open'])
