#!/usr/bin/env bash
# Snakemake runs this once inside the new conda env, right after creating it (`--sdm conda`): it installs THIS
# checkout of meds1 into the env, editable, so the rule's script and every process it starts (accelerate's training
# workers, vLLM's) import the same code, with or without `--directory`. The env's own file lists meds1's runtime
# dependencies for this rule (hence --no-deps: the vLLM env keeps vLLM's torch pin). MEDS1_SOURCE is the checkout,
# exported by rules/common.smk while the Snakefile is parsed; an env is rebuilt when its env or post-deploy file
# changes, and otherwise follows the checkout's code because the install is editable.
set -euo pipefail
: "${MEDS1_SOURCE:?MEDS1_SOURCE is not set: create the envs through snakemake (snakemake --sdm conda --conda-create-envs-only)}"
python -m pip install --no-deps --editable "$MEDS1_SOURCE"
python -c "import meds1, sys; print('meds1 from', meds1.__file__, file=sys.stderr)"
