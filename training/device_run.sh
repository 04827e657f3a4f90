#!/usr/bin/env bash
# Train the bundled model on a lent GPU machine (one H200, 16 cores), in one short call of the device tool:
#   bash training/device_run.sh OUT_DIR [variant ...]     # variant: "name batch lr"
# A smoke test first (a few CUDA steps on every family, so a broken run fails in seconds), then each
# variant's GPU curriculum, side by side on the one GPU (a 4M-parameter model leaves it mostly idle).
# After every phase each run's weights and logs are exported to OUT_DIR, so a run cut off by the call's
# time limit still returns its last finished phase. OUT_DIR then holds, per variant:
# NAME.safetensors (released key layout) and NAME.tar.gz (config, tokenizer, training.json, logs).
set -euo pipefail
out_dir=${1:?OUT_DIR}
shift
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=("b 128 8e-4")  # the bundled weights' variant
py=${PYTHON:-python3}
device=${DEVICE:-cuda}  # cpu for a dry run here (with SCALE=0.05)
export PYTHONUNBUFFERED=1
mkdir -p "$out_dir"
# Training never decodes a video file (the generators draw frames), but `video` imports PyAV, which
# that machine's image lacks: an empty stand-in satisfies the import.
if ! "$py" -c "import av" 2>/dev/null; then
    mkdir -p /tmp/av_stub/av && : >/tmp/av_stub/av/__init__.py
    export PYTHONPATH=/tmp/av_stub:${PYTHONPATH:-}
fi
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

run_root=/tmp/device_runs
rm -rf "$run_root" && mkdir -p "$run_root"
seed_tokenizer() { cp mm_model/bundled/tiny/tokenizer.json "$1/tokenizer.json"; }

mkdir -p "$run_root/smoke" && seed_tokenizer "$run_root/smoke"
"$py" -m training.train --out "$run_root/smoke" --device "$device" --batch 16 --steps 4 --workers 2 \
    --mix full --lr 1e-4 >"$run_root/smoke.log" 2>&1 || { tail -40 "$run_root/smoke.log"; exit 1; }
grep "^done" "$run_root/smoke.log"

export_run() {  # $1: the run's directory; its basename names the outputs
    local run=$1 name
    name=$(basename "$run")
    "$py" -m training.train --out "$run" --export "$run/export" >>"$run/export.log" 2>&1 || return 0
    cp "$run/export/model.safetensors" "$out_dir/$name.safetensors.tmp"
    mv "$out_dir/$name.safetensors.tmp" "$out_dir/$name.safetensors"
    tar -czf "$out_dir/$name.tar.gz" -C "$run" --exclude=export/model.safetensors export log.jsonl \
        curriculum.log export.log
    echo "exported $name: $(tail -1 "$run/export.log")"
}
export -f export_run
export out_dir py

pids=()
for v in "${variants[@]}"; do
    read -r name batch lr <<<"$v"
    run=$run_root/$name
    mkdir -p "$run" && seed_tokenizer "$run"
    PLAN=gpu DEVICE=$device BATCH=$batch LR=$lr THREADS=${THREADS:-2} WORKERS=${WORKERS:-6} AFTER_PHASE=export_run \
        bash training/curriculum.sh "$run" "$py" >"$run/curriculum.log" 2>&1 &
    pids+=($!)
    echo "started $name: batch $batch, lr $lr"
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for v in "${variants[@]}"; do
    read -r name _ <<<"$v"
    grep -h "^done\|resumed" "$run_root/$name/curriculum.log" || true
    tail -3 "$run_root/$name/curriculum.log" | tr '\r' '\n' | tail -2
done
exit $status
