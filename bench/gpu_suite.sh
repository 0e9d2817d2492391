#!/usr/bin/env bash
# The GPU figures recorded in bench/README.md, in one go (each run in its own process, so an
# out-of-memory in one does not end the others). Usage: bash bench/gpu_suite.sh [LOGDIR]
set -u
log=${1:-bench-gpu-logs}
mkdir -p "$log"
py=${PYTHON:-python3}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
run() {  # name, then train_step.py arguments
  local name=$1; shift
  echo "## $name: $*"
  timeout "${RUN_TIMEOUT:-240}" "$py" bench/train_step.py --full --steps "${STEPS:-3}" "$@" \
    2>"$log/$name.err" | tee "$log/$name.md" || { echo "(failed: $?)"; tail -3 "$log/$name.err"; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# Wan 2.1 1.3B at the target shape (480x832x81, rank 32): SDPA kernel, then less recompute.
run wan13b-81-ckpt-flash --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --gradient-checkpointing --attention flash
run wan13b-81-ckpt       --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --gradient-checkpointing
run wan13b-81-ckpt12     --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --gradient-checkpointing --checkpoint-blocks 12
run wan13b-81-ckpt8      --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --gradient-checkpointing --checkpoint-blocks 8
# Selective checkpointing (matmul/attention outputs kept): every block, then only the last 20.
run wan13b-81-sel        --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --selective
run wan13b-81-sel20      --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --selective --checkpoint-blocks 20
# Wan 2.1 14B at 480p on a 24 GB budget: fp8 base weights + block swap.
run wan14b-33-swap30     --preset wan2.1-t2v-14b --resolution 480p --frames 33 --fp8 --block-swap 30
run wan14b-81-swap30     --preset wan2.1-t2v-14b --resolution 480p --frames 81 --fp8 --block-swap 30
# ... and at 81 frames with the block inputs in host memory (what should fit 24 GB).
run wan14b-81-swap30-off --preset wan2.1-t2v-14b --resolution 480p --frames 81 --fp8 --block-swap 30 --offload-activations
run wan13b-81-ckpt-off   --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --gradient-checkpointing --offload-activations
# Where the 1.3B step's time goes at the best setting (kernel time per category, top ops).
run wan13b-81-ckpt10-prof --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --gradient-checkpointing --checkpoint-blocks 10 --profile 30
