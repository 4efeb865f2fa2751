#!/usr/bin/env bash
# Create .venv and install med-s1 with its test extras. torch is pinned to a range that takes the CPU wheel on CPU
# machines and the CUDA build on clusters; a bare `torch` would pull several GB of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "torch>=2.6,<2.14"
.venv/bin/pip install -q -e ".[test]"

# `snakemake --profile slurm` finds profiles by name in the user's snakemake config folder: link ours there.
cfg="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake"
mkdir -p "$cfg"
if [ -e "$cfg/slurm" ] && [ ! -L "$cfg/slurm" ]; then
  echo "note: $cfg/slurm exists and is not ours; use --profile profiles/slurm" >&2
else
  ln -sfn "$PWD/profiles/slurm" "$cfg/slurm"
fi
