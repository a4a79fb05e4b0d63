#!/usr/bin/env bash
# Fetch (here, where PyPI is reachable) the wheels mmreact's expert benchmark needs on the lent GPU
# machine, whose image has torch, torchvision, transformers, opencv-python-headless, scikit-image,
# scipy, typer, rich, tqdm, pyyaml, matplotlib and psutil, but not these. Python 3.12, x86-64.
# About 11 MiB in all; `.whl/` is git-ignored and travels with `carry: [".whl"]`.
#
#     bash tools/device_wheels.sh            # then, on the device: bash tools/device_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(
  # mmreact's own dependencies missing there
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  docstring-parser==0.18.0
  # detect: ultralytics (polars is imported only by its dataset/explorer code, never on predict)
  ultralytics==8.4.190 ultralytics-thop==2.2.3
  # ocr: EasyOCR and its compiled helpers
  easyocr==1.7.2 pyclipper==1.4.0 python-bidi==0.6.12 shapely==2.2.0
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pkgs[@]}"
du -sh .whl
