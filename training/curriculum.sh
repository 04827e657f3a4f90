#!/usr/bin/env bash
# The bundled model's progressive curriculum: each stage a fresh warm-up + cosine phase, on a wider mix
# until the last, which repeats image_first at a lower peak.
#   bash training/curriculum.sh training/runs/v4 [python]
set -euo pipefail
out=${1:-training/runs/main}
py=${2:-python}
common=(--out "$out" --lr 4e-4 --warmup 30 --threads 2 --workers 1 --ckpt-minutes 3)
"$py" -m training.train "${common[@]}" --mix basics --phase-minutes 1.5
"$py" -m training.train "${common[@]}" --mix images --phase-minutes 6
"$py" -m training.train "${common[@]}" --mix ground --phase-minutes 6
"$py" -m training.train "${common[@]}" --mix image_first --phase-minutes 15
# a second pass over the same mix, fresh warm-up, lower peak (the bundled weights: 47.5 CPU-min in all)
"$py" -m training.train "${common[@]/4e-4/3e-4}" --mix image_first --new-phase --phase-minutes 19
