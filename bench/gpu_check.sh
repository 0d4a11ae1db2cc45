#!/usr/bin/env bash
# GPU check of the distillation trainer (issue 5): on a machine with CUDA, in under 5 minutes,
#   1. teacher extraction on CUDA (a full-size WavLM Base architecture with random weights,
#      loaded through usad2's hf_wavlm family: nothing is downloaded),
#   2. a short bf16 training with DDP over nccl (torchrun, 1 GPU, online teacher on the GPU),
#   3. the same with FSDP (fully_shard over nccl),
# and prints what it measured. Fails at once, clearly, without CUDA.
#   bench/gpu_check.sh [WORKDIR]      (default: a temporary directory, removed at the end)
# The data pipeline is a synthetic stand-in there (bench/gpu_check.py says why).
# Measured 2026-11-26 on one H100 80GB (torch 2.11.0+cu130, transformers 5.17), 2 min in all:
#   WavLM Base extraction 0.93 ms per audio second (8 x 10 s, teacher in fp32);
#   small student, bf16, online WavLM teacher, 64 s batches: DDP/nccl 2.48 steps/s (159 audio s/s,
#   2.4 GB peak), FSDP/nccl 2.42 steps/s (2.3 GB); both loss curves 0.6637 -> 0.4218 over 40 steps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-tools/venv/bin/python}
[ -x "${python}" ] || python=python3
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}" OMP_NUM_THREADS=4

if ! "${python}" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device visible to torch; run this on a GPU machine" >&2
    exit 2
fi
work=${1:-}
if [ -z "${work}" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "${work}"' EXIT
fi
log() { echo "$(date '+%H:%M:%S') gpu_check: $*"; }

log "$("${python}" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0), "bf16" if torch.cuda.is_bf16_supported() else "no-bf16", "transformers", transformers.__version__)')"
"${python}" bench/gpu_check.py prepare "${work}"
log "teacher extraction on CUDA"
"${python}" bench/gpu_check.py extract "${work}"

common=(--train_dir synthetic --dev_dir synthetic --plugins bench.gpu_check --teachers gpu_wavlm
        --teacher_cards "${work}/cards" --student small --device cuda --precision bf16
        --max_steps 40 --warmup_steps 5 --lr 5e-4 --batch_seconds 64 --crop_seconds 4
        --save_every 20 --dev_every 40 --log_every 10 --num_workers 4 --threads 4)
for mode in ddp fsdp; do
    fsdp=false; [ "${mode}" = fsdp ] && fsdp=true
    log "bf16 training, ${mode} over nccl (torchrun, 1 GPU)"
    "${python}" -m torch.distributed.run --standalone --nproc-per-node 1 -m usad2.bin.distill \
        "${common[@]}" --fsdp "${fsdp}" --out_dir "${work}/exp_${mode}" > "${work}/${mode}.log" 2>&1 \
        || { tail -40 "${work}/${mode}.log"; exit 1; }
    grep -q "process group: backend nccl" "${work}/exp_${mode}/distill.log" \
        || { echo "gpu_check: ${mode} did not run over nccl" >&2; exit 1; }
    "${python}" bench/gpu_check.py report "${work}/exp_${mode}"
done
log "resume: rerunning the DDP command after it finished must not train again"
"${python}" -m torch.distributed.run --standalone --nproc-per-node 1 -m usad2.bin.distill \
    "${common[@]}" --fsdp false --out_dir "${work}/exp_ddp" > "${work}/rerun.log" 2>&1
log "all GPU checks passed"
