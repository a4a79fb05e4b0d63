#!/usr/bin/env bash
# The expert benchmark on a lent GPU machine, as ONE device call (issue 3's GPU target).
#
# Here first:   bash tools/device_wheels.sh     (the wheels the device image lacks -> .whl/, ~11 MiB)
# Then run it:  device run, carry [".whl"], timeout_s 540:  bash tools/device_bench.sh
#
# The device image has torch, torchvision, transformers, opencv, scikit-image and scipy; mmreact's
# other needs, ultralytics and EasyOCR come from .whl. EasyOCR's real English weights are too big to
# carry, so OCR runs randomly initialised networks of the real architecture (--ocr-weights random).
# Real-size random BLIP-base, Florence-2-base and CLIP B/32 are built there (about 1 min).
# Results: the printed tables (one image; 8 images per expert, one by one vs run_batch), and
# $OUT/bench_experts_cuda.json.
# Rehearsed on a CPU-only copy of the device's package set (tiny models; README, "Speed").
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 YOLO_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
out="${OUT:-/tmp}"
python3 tools/bench_experts.py --size real --device cuda --repeats 3 --batch 8 --models /tmp/mmreact-bench \
  --ocr-weights random --json "$out/bench_experts_cuda.json" 2>&1 | grep -v -E "Loading weights|Writing model"
