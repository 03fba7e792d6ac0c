#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script for a lent GPU machine (which has its own
# torch, numpy, pandas, Pillow and pyparsing): the wheels of what it lacks are carried in .whl/
# (SQLAlchemy, greenlet, kornia, kornia_rs, mlxtend, downloaded with pip download for cp312).
# Writes its tables to $OUT (or bench/out) as well as to stdout.
set -u
out=${OUT:-bench/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 bench/train.py --device cuda --images 5000 --seconds 3 --rounds 2 2>&1 | tee "$out/train_cuda.txt"
python3 bench/train.py --device cuda --images 5000 --seconds 3 --rounds 1 --batch-size 512 2>&1 | tee "$out/train_cuda_b512.txt"
python3 bench/tutorial_build.py --images 100000 2>&1 | tee "$out/tutorial_build_cuda.txt"
# the torchvision backbones (issue 14): training views/s at 224 px, CONVERT of pretrained ones
python3 bench/backbones.py --images 1024 --convert 5000 2>&1 | tee "$out/backbones_cuda.txt"
