#!/usr/bin/env bash
# Regenerates deploy/manifests/confcom.yaml from the Helm chart (default values, release
# "confcom", namespace "confcom-system"), with the same pinned Helm engine as the tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Installs the tools on first use (and runs one fast test to make sure they work).
bash "$here/tests/run.sh" -k test_kube_version_schemas_ship_with_the_package >/dev/null
dir="$here/../target/chart-tests"
if [ -x "$dir/venv/bin/python" ]; then
  PYTHONDONTWRITEBYTECODE=1 "$dir/venv/bin/python" "$here/tests/chartlib.py" >"$here/manifests/confcom.yaml"
else
  PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$dir/site" "${PYTHON:-python3}" "$here/tests/chartlib.py" >"$here/manifests/confcom.yaml"
fi
echo "wrote deploy/manifests/confcom.yaml"
