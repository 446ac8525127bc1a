#!/usr/bin/env bash
# The GPU measurements of the KAN layer's Triton kernel, in one command on a machine with a CUDA GPU:
#
#     bash scripts/gpu_check.sh [output directory, default gpu-check]
#
# 1. the kernel's tests on the GPU (compiled Triton against torch operations, the registered operator,
#    torch.compile with fullgraph);
# 2. scripts/bench_speed.py on CUDA, float32: N = 10^5 at G = 5, 100 (with torch.compile rows), and
#    N = 10^6 (time per loss + gradient, peak memory per point in the CSV's peak_mem_mb / n_points);
# 3. python -m kanpde problem=poisson2d trainer.device=cuda, and its time to rel L2 1e-3.
# Each step's output lands in the directory, beside the card's name; docs/speed.md says how to read them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-gpu-check}")
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script measures the GPU path')"
python -c "import torch, triton; print(torch.cuda.get_device_name(), '| torch', torch.__version__, '| triton', triton.__version__)" | tee "$out/device.txt"
python -m pytest -q -n 0 -p no:cacheprovider tests/models/test_triton_jet.py tests/models/test_layer_op.py 2>&1 | tee "$out/tests.txt"
python scripts/bench_speed.py --device cuda --n 100000 --dtype float32 --grids 5 100 --compile --out "$out/bench_1e5.csv" 2>&1 | tee "$out/bench_1e5.txt"
python scripts/bench_speed.py --device cuda --n 1000000 --dtype float32 --repeats 10 --out "$out/bench_1e6.csv" 2>&1 | tee "$out/bench_1e6.txt"
python -m kanpde problem=poisson2d trainer.device=cuda hydra.run.dir="$out/poisson2d" 2>&1 | tee "$out/poisson2d.txt"
python scripts/time_to_accuracy.py "$out/poisson2d/results.h5" 2>&1 | tee "$out/time_to_accuracy.txt"
