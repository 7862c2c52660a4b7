#!/usr/bin/env bash
# The gaze ablation's research setting on one GPU: examples/gaze_ablation.py --setting research, its runs side by side
# in WORKERS processes that share the GPU (one small run leaves it mostly idle).
#
#   bash examples/gaze_ablation_gpu.sh OUTPUT_FOLDER [gaze_ablation.py options]
#   TIME_LIMIT_S=500 WORKERS=8 bash examples/gaze_ablation_gpu.sh "$OUT"
#
# The study is kept under STUDY_FOLDER (default outputs/ablation-research-gpu; runs/ holds each run's demo folder),
# so a second call on the same machine resumes it. When the script ends, finished or stopped, OUTPUT_FOLDER gets
# ablation_research.json and ablation_research.md (the results file and its tables), ablation_research.tar.gz (the
# per-study files: unpack into benchmarks/results/ beside the results file) and workers.tar.gz (each worker's log).
# Environment: WORKERS (default 8), TIME_LIMIT_S (default none: after that many seconds the study is stopped, the
# runs finished so far merged and collected, exit code 124), PYTHON (default python3; it must import the package's
# dependencies: `make install PYTHON=...` where the machine reaches PyPI). Runs the package from this checkout.
set -euo pipefail
output=${1:?usage: bash examples/gaze_ablation_gpu.sh OUTPUT_FOLDER [gaze_ablation.py options]}
shift
output=$(realpath -m "$output")
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
study=${STUDY_FOLDER:-outputs/ablation-research-gpu}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU visible to torch')"
mkdir -p "$output" "$study"

collect() {
    [ -f "$study/ablation_research.json" ] && cp "$study"/ablation_research.{json,md} "$output/"
    [ -d "$study/ablation_research" ] && tar -czf "$output/ablation_research.tar.gz" -C "$study" ablation_research
    [ -d "$study/runs/workers" ] && tar -czf "$output/workers.tar.gz" -C "$study/runs" workers
    return 0
}
trap collect EXIT

limit=()
[ -n "${TIME_LIMIT_S:-}" ] && limit=(timeout --kill-after=60 "$TIME_LIMIT_S")
"${limit[@]}" "$python" examples/gaze_ablation.py --setting research --workers "${WORKERS:-8}" \
    --output "$study/runs" --results "$study/ablation_research.json" "$@"
