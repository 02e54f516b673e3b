#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script (a few minutes on one H100/H200).
#
#   experiments/perf/gpu_check.sh [OUT_DIR]      # from the repository root; default results/gpu_check
#
# 1. tests/test_cuda.py on the GPU: engines agree, CPU and CUDA agree, no vmap fallbacks,
#    deterministic default run (these tests are skipped on machines without CUDA, such as CI);
# 2. the default experiment through the CLI with device=cuda;
# 3. experiments/perf/bench_round.py --device cuda (the 2NN workload, all engines);
# 4. experiments/perf/bench_engines.py: engines vs clients per round on the McMahan CNN;
# 5. the CPU test suite under this machine's torch (skipping wandb, which may be absent);
# 6. experiments/perf/cuda_determinism.py: which part makes repeated CUDA runs differ in the last bits.
# QUICK=1 runs steps 1, 3, 4 and 6 only (and tests/test_trace.py with step 1).
# Wheels for missing pure-Python dependencies (hydra-core, omegaconf, antlr4) may be placed in
# .whl/; they are installed into /tmp/site. Each step has its own time limit and the script goes on.
set -u
OUT=${1:-results/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
step() { echo; echo "=== $1 ($(date -u +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"

step "tests/test_cuda.py on the GPU"
timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py ${QUICK:+tests/test_trace.py} 2>&1 | tee "$OUT/test_cuda.log" | tail -25

if [ -z "${QUICK:-}" ]; then
step "default experiment, device=cuda"
timeout 120 python3 -m fedbench device=cuda progress=false "hydra.run.dir=$OUT/default_cuda" 2>&1 | tail -5
python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print({k: s.get(k) for k in ('status','engine','wall_time_s')}, s.get('final',{}).get('test_acc'))" "$OUT/default_cuda/summary.json"

fi

step "bench_round.py --device cuda"
timeout 240 python3 experiments/perf/bench_round.py --device cuda --rounds 10 --out "$OUT/round_cuda.json" 2>&1 | tail -22

step "bench_engines.py, McMahan CNN, device=cuda"
timeout 240 python3 experiments/perf/bench_engines.py --model cnn_mnist --clients 10,50 --device cuda \
  --engines sequential,vmap+eager,vmap,vmap+compile --out "$OUT/engines_cuda.json" 2>&1 | tail -6

if [ -z "${QUICK:-}" ]; then
step "CPU test suite under this machine's torch"
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 8 -k "not wandb and not console_script" tests 2>&1 | tail -8
fi
step "cuda_determinism.py"
timeout 240 python3 experiments/perf/cuda_determinism.py --device cuda 2>&1 | tail -6
step "done"
