#!/usr/bin/env bash
# The bundled model's progressive curriculum: each stage a fresh warm-up + cosine phase, on a wider mix.
#   bash training/curriculum.sh OUT [python]                     # CPU plan: 47.5 min on 2 cores, batch 16
#   PLAN=gpu DEVICE=cuda bash training/curriculum.sh OUT python3  # GPU plan: 9.3 min, batch 128 (the bundled weights)
# Environment: PLAN (cpu|gpu), DEVICE, BATCH, LR (peak of the early phases), SCALE (x phase minutes),
# THREADS, WORKERS.
# Phases are "mix minutes lr-factor"; a repeated mix starts a new phase (--new-phase).
set -euo pipefail
out=${1:-training/runs/main}
py=${2:-python}
plan=${PLAN:-cpu}
case "$plan" in
    # the CPU plan ends with a second pass over image_first at 3/4 of the peak
    cpu) phases=("basics 1.5 1" "images 6 1" "ground 6 1" "image_first 15 1" "image_first 19 0.75")
         batch=${BATCH:-16} lr=${LR:-4e-4} ;;
    # the bundled weights: on one H200, next to two other variants for the first 6.3 min (device_run.sh),
    # then alone; ~3.5x the CPU plan's samples; the last two phases weight video up (the full mix)
    gpu) phases=("basics 0.27 1" "images 0.9 1" "ground 1.08 1" "image_first 1.8 1" "full 2.25 0.6" "full 3 0.5")
         batch=${BATCH:-128} lr=${LR:-8e-4} ;;
    *) echo "unknown PLAN=$plan (cpu or gpu)" >&2; exit 2 ;;
esac
common=(--out "$out" --batch "$batch" --warmup 30 --device "${DEVICE:-cpu}" --threads "${THREADS:-2}"
        --workers "${WORKERS:-1}" --ckpt-minutes 5)
prev=""
for phase in "${phases[@]}"; do
    read -r mix minutes factor <<<"$phase"
    read -r peak minutes < <("$py" -c "print(f'{$lr * $factor:.3g}', $minutes * ${SCALE:-1})")
    new=()
    [ "$mix" = "$prev" ] && new=(--new-phase)
    "$py" -m training.train "${common[@]}" --mix "$mix" --phase-minutes "$minutes" --lr "$peak" "${new[@]}"
    prev=$mix
    # a hook between phases (the device script exports after each, so a cut-off run still returns weights)
    if [ -n "${AFTER_PHASE:-}" ]; then $AFTER_PHASE "$out"; fi
done
