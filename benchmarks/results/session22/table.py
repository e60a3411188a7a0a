"""The session's fine-tune table from runs/s22/ft_*/results.json (usage: table.py [RUNS_DIR])."""
import json, sys
from pathlib import Path
base = Path(sys.argv[1] if len(sys.argv) > 1 else 'runs/s22')
names = {'Pp': 'plain prior, plain fine-tune', 'Uu': 'union prior, union fine-tune',
         'Up': 'union prior, plain fine-tune', 'Pu': 'plain prior, union fine-tune'}
rows = []
def split(run, last):
    nv = run['novel_view']; pf = last['psnr_frames']
    seen = [p for p, n in zip(pf, nv) if not n]; novel = [p for p, n in zip(pf, nv) if n]
    mean = lambda v: f"{sum(v)/len(v):.2f}" if v else '-'
    return f"{mean(seen)} / {mean(novel)}"

for d in sorted(base.glob('ft_*')):
    f = d / 'results.json'
    if not f.exists():
        continue
    cfg = d.name.split('_')[1]
    for run in json.load(open(f))['runs']:
        c = run['curve']
        last = c[-1]
        rows.append((run['avatar'][:4], run['seed'], cfg, ' / '.join(f"{p['psnr']:.2f}" for p in c),
                     last.get('lpips'), last.get('lmd'), last.get('mouth_offset_px'), last.get('lmd_mouth_shape'),
                     run['train_s'], sum(run['novel_view']), split(run, last)))
rows.sort()
print('| held out | seed | prior, fine-tune | PSNR @300 / 600 / 900 / 1200 | LPIPS | LMD | mouth offset / shape | PSNR seen / novel views | train s |')
print('|---|---|---|---|---|---|---|---|---|')
for a, s, cfg, p, l, m, o, sh, t, nv, sp in rows:
    f = lambda v, n=3: '-' if v is None else f"{v:.{n}f}"
    print(f"| {a} | {s} | {names[cfg]} | {p} | {f(l)} | {f(m,2)} | {f(o,2)} / {f(sh,2)} | {sp} | {t:.0f} |")
