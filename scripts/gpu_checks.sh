#!/usr/bin/env bash
# Every GPU check of README "Performance" in one run, for a session that has a CUDA machine for a few minutes:
# the CUDA tests first (the custom kernels, StyleGAN3's filtered_lrelu among them, and the mixed path against the
# reference), then the benchmarks, each
# bounded by its own timeout so one slow step cannot eat the others' time. Output: one log per step in OUT_DIR
# and a summary line per step on stdout. The limits add up to 9.25 minutes: one call of a lent machine.
#
#   bash scripts/gpu_checks.sh [OUT_DIR]        # default: gpu-checks/ ; PYTHON overrides the interpreter
set -uo pipefail

out=${1:-gpu-checks}
python=${PYTHON:-python}
mkdir -p "$out"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

# name | seconds allowed | command
steps=(
  "cuda-tests|180|env SGSIM_CUDA_OPS=1 $python -m pytest -q -p no:cacheprovider tests/stylegan2 tests/sgsim/test_precision.py tests/sgsim/worlds/test_resumable.py"
  "bench-generator|60|$python scripts/bench_generator.py --device cuda"
  "bench-edit|150|$python scripts/bench_edit.py --device cuda --steps 100"
  "bench-directions|45|$python scripts/bench_directions.py --device cuda --apply-resolutions 1024 --skip-learning"
  "bench-video|60|$python scripts/bench_video.py --device cuda --resolution 1024"
  "bench-evaluation|60|$python scripts/bench_evaluation.py --device cuda --reference-clips 50"
)
for step in "${steps[@]}"; do
  IFS='|' read -r name limit command <<< "$step"
  started=$(date +%s)
  timeout "$limit" $command > "$out/$name.log" 2>&1
  code=$?
  echo "$name: exit $code in $(( $(date +%s) - started )) s (limit $limit s); last line: $(tail -n 1 "$out/$name.log")"
done
