#!/usr/bin/env bash
# CPU refinement of a GPU-trained model with the max/min aux heads (how the bundled weights were made
# from the `PLAN=gpu` curriculum's export; 80 min of step time on 2 cores):
#   bash training/refine.sh GPU_EXPORT_DIR OUT [python]
# 1. the ground mix with aux heads: the tower learns to carry titles and shapes (read directly);
# 2. one structural kind at a time, so the LM learns where to look (each ~3k samples alone);
# 3. video, then the full mix, then image_first: the other kinds come back, the new ones stay.
set -euo pipefail
init=${1:?GPU_EXPORT_DIR}
out=${2:?OUT}
py=${3:-python}
c=(--out "$out" --batch 16 --warmup 20 --threads 2 --workers 1 --ckpt-minutes 10 --aux-weight 1 --new-phase)
"$py" -m training.train "${c[@]}" --init "$init" --mix ground --lr 4e-4 --warmup 30 --phase-minutes 25
for kind in screenshot/title screenshot/field screenshot/highlighted; do
    "$py" -m training.train "${c[@]}" --mix "$kind" --lr 3e-4 --phase-minutes 1.2
done
"$py" -m training.train "${c[@]}" --mix basics/shape_single,image/shape_of --lr 3e-4 --phase-minutes 1.5
"$py" -m training.train "${c[@]}" --mix video --lr 3e-4 --phase-minutes 5
"$py" -m training.train "${c[@]}" --mix full --lr 3e-4 --phase-minutes 20
"$py" -m training.train "${c[@]}" --mix image_first --lr 2e-4 --phase-minutes 25
