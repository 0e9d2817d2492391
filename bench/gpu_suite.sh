#!/usr/bin/env bash
# The GPU figures recorded in bench/README.md, in one go, most important first: a lent GPU
# machine may be taken back before the end, and each row runs in its own process (an
# out-of-memory in one does not end the others) under its own time limit.
#   Usage: bash bench/gpu_suite.sh [LOGDIR]      (ROWS="sel none" to run only some rows)
# Everything a row prints goes to LOGDIR/suite.md (tables) and LOGDIR/suite.err (stderr), two
# files whatever the number of rows, so that a copy of the folder stays small.
set -u
log=${1:-bench-gpu-logs}
mkdir -p "$log"
py=${PYTHON:-python3}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
want() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }
row() {  # name, time limit (s), then the command
  local name=$1 limit=$2; shift 2
  want "$name" || return 0
  echo "## $name: $*" | tee -a "$log/suite.md"
  echo "## $name" >>"$log/suite.err"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>>"$log/suite.err" | tee -a "$log/suite.md"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "(failed: exit $rc)" | tee -a "$log/suite.md"; tail -3 "$log/suite.err"; }
  echo "($name: $((SECONDS - t0)) s)" | tee -a "$log/suite.md"
}
train() {  # name, time limit, then train_step.py arguments
  local name=$1 limit=$2; shift 2
  row "$name" "$limit" "$py" bench/train_step.py --full --steps "${STEPS:-3}" "$@"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c "import torch, diffusers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'peft', peft.__version__)"
} 2>&1 | tee -a "$log/suite.md"
# Wan 2.1 1.3B at the target shape (480x832x81, rank 32): the step-time target (<= 2.5 s).
train sel 120 --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --selective
# Wan 2.1 14B at 81 frames on a 24 GB budget: fp8 base weights + block swap + block inputs in
# host memory (the CPU count says ~18 GB).
STEPS=2 train 14b-off 170 --preset wan2.1-t2v-14b --resolution 480p --frames 81 --fp8 --block-swap 30 --offload-activations
# no checkpointing at all: 102 GiB of activations by the CPU count; fits a 141 GB card only
train none 120 --preset wan2.1-t2v-1.3b --resolution 480p --frames 81
# The CUDA-only code paths (trainer memory savers, render placement): pass/fail.
row pytest 150 "$py" -m pytest -q -m gpu --noconftest -p no:cacheprovider tests/unit/trainer/test_gpu.py \
  $(ls tests/unit/render/test_gpu*.py 2>/dev/null)
# Render: seconds per denoising step and peak memory through render's own pipeline code.
[ -f bench/render_step.py ] && row render 240 "$py" bench/render_step.py ${RENDER_ARGS:---full}
# Wan 2.2 A14B: two 14B experts resident, each step trains one (alternating).
STEPS=2 train a14b 170 --preset wan2.2-t2v-a14b --resolution 480p --frames 33 --fp8 --block-swap 30
# the image families at 1024^2
train sdxl 90 --preset sdxl --resolution 1024 --gradient-checkpointing
train flux 120 --preset flux.1-dev --resolution 1024 --gradient-checkpointing
# full recompute, for the comparison with the H100 rows in bench/README.md
train ckpt 120 --preset wan2.1-t2v-1.3b --resolution 480p --frames 81 --gradient-checkpointing
