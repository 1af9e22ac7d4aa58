#!/usr/bin/env bash
# scripts/gpu_check.sh — the whole device check of a session lent a GPU, as ONE command
# (correctness first, then speed beside PyTorch on the same card in the same run), so the
# 15 minutes of device time go to measuring. It runs on the device machine, which has no
# Rust toolchain and cannot reach ../shared; prepare here, in the repository root:
#
#   cargo build --release --bin wgpu-rnn --example next_frame
#   mkdir -p .golden && cp ../shared/golden/*.safetensors .golden/
#   (Vulkan loader .debs into .gl: /work/.library/device/README.md)
#   printf '/.gl/\n/.golden/\n' >> .git/info/exclude
#
# then call the device tool with
#   command: bash scripts/gpu_check.sh            (add "quick" for a smoke run of each stage)
#   carry:   target/release/wgpu-rnn, target/release/examples/next_frame, .gl, .golden
#   timeout_s: 540
# Files come back from $OUT: log.txt (adapter, verify summaries, the compare tables, the
# measured Auto table, next-frame throughput), the six bench reports
# rec|gemm|conv _ours|_torch.json and auto_table.json (`wgpu-rnn tune --from`).
# Every stage has its own time limit, so one slow stage cannot eat the others' time; a
# failed stage is reported in log.txt and the script goes on. Record the numbers, card and
# driver in BENCHMARKS.md.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
QUICK=${1:-}
BIN=target/release/wgpu-rnn
NEXT=target/release/examples/next_frame
export PYTHONUNBUFFERED=1
# The PyTorch side runs on CUDA; TORCH_DEVICE=cpu tries the plumbing on a machine without one.
TORCH_DEVICE=${TORCH_DEVICE:-cuda}

say() { echo "== $* ($(date +%T))" | tee -a "$LOG"; }
# stage SECONDS CMD...: runs CMD under a time limit, its output into the log.
stage() {
    local limit=$1
    shift
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || echo "!! exit $rc (124 = over ${limit}s): $*" | tee -a "$LOG"
}

if [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if ! "$BIN" info >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi

say "adapter"
stage 60 "$BIN" info
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv >>"$LOG" 2>&1

say "verify: every golden, every algorithm"
GOLDENS=(tests/data/*.safetensors)
[ -d .golden ] && GOLDENS+=(.golden/*.safetensors)
# verify NAME ARGS...: one summary line per run, and the first failing rows.
verify() {
    echo "-- $1" >>"$LOG"
    shift
    timeout 120 "$BIN" verify "$@" >"$OUT/verify.jsonl" 2>&1
    echo "exit $?: $(tail -n 1 "$OUT/verify.jsonl")" >>"$LOG"
    grep '"pass":false' "$OUT/verify.jsonl" | head -n 5 >>"$LOG"
}
for algo in auto stepwise persistent resident grid tiled; do
    verify "$algo" --algorithm "$algo" "${GOLDENS[@]}"
done
WGPU_RNN_STEP=tiled WGPU_RNN_GEMM=gpu_scalar verify "tiled step, scalar-load GEMM" "${GOLDENS[@]}"
WGPU_RNN_RESIDENT_STORES=staged verify "resident, staged stores" --algorithm resident "${GOLDENS[@]}"
verify "Keras models" tests/data/models/*.safetensors
rm -f "$OUT/verify.jsonl"

if [ "$QUICK" = quick ]; then
    SHAPES="8,100,128,128"
    GEMMS="800,128,512"
    CONV=(--quick)
else
    # Issue 10's four shapes and issue 11's B256 T50 I=H=512.
    SHAPES="1,1000,64,64;8,100,128,128;16,100,256,256;64,100,256,256;256,50,512,512"
    GEMMS="800,128,512;512,512,512;2048,2048,2048"
    CONV=()
fi

say "recurrent cells: ours, then cuDNN fp32 (TF32 off)"
stage 240 "$BIN" bench --cells lstm,gru,rnn --impls persistent,stepwise,resident,grid \
    --shapes "$SHAPES" --json "$OUT/rec_ours.json"
stage 120 python3 bench/pytorch_baseline.py --device "$TORCH_DEVICE" --cells lstm,gru,rnn \
    --shapes "$SHAPES" --json "$OUT/rec_torch.json"
stage 30 "$BIN" compare "$OUT/rec_ours.json" "$OUT/rec_torch.json"
# The measured Auto table of this card, from the report above (no extra device time).
stage 30 "$BIN" tune --from "$OUT/rec_ours.json" --out "$OUT/auto_table.json"

say "GEMM: ours, then torch.matmul fp32"
stage 90 "$BIN" bench --cells gemm --gemm-shapes "$GEMMS" --json "$OUT/gemm_ours.json"
stage 60 python3 bench/pytorch_baseline.py --device "$TORCH_DEVICE" --cells gemm \
    --gemm-shapes "$GEMMS" --json "$OUT/gemm_torch.json"
stage 30 "$BIN" compare "$OUT/gemm_ours.json" "$OUT/gemm_torch.json"

say "ConvLSTM2D: ours, then the two PyTorch loops"
stage 150 "$BIN" bench --cells convlstm2d --impls stepwise,persistent,tiled "${CONV[@]}" \
    --json "$OUT/conv_ours.json"
stage 120 python3 bench/pytorch_convlstm.py --device "$TORCH_DEVICE" --check "${CONV[@]}" \
    --json "$OUT/conv_torch.json"
stage 30 "$BIN" compare "$OUT/conv_ours.json" "$OUT/conv_torch.json"

say "next-frame training throughput (one short epoch each)"
for size in "" --full; do
    stage 90 "$NEXT" $size --epochs 1 --train 64 --heldout 8 --out /tmp/next_frame
    grep -o '"train_sequences_per_s":[^,}]*' /tmp/next_frame/metrics.json >>"$LOG" 2>&1
done
say "done"
