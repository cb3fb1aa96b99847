#!/usr/bin/env bash
# Chart tests: renders deploy/helm/confcom offline with the real Helm engine, lints it,
# validates every object against the Kubernetes 1.30 schemas, checks the plain manifests
# and the samples. Needs only python3 (with venv or pip) and PyPI; the tools go into
# target/chart-tests/ (reused while deploy/tests/requirements.txt is unchanged).
# Exit status is pytest's; its summary line is the last line printed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="$repo/target/chart-tests"
req="$here/requirements.txt"
stamp="$(sha256sum "$req" | cut -c1-16)"
py="${PYTHON:-python3}"
mkdir -p "$dir"

pyrun=()
if [ -x "$dir/venv/bin/python" ] && [ "$(cat "$dir/venv/.stamp" 2>/dev/null)" = "$stamp" ]; then
  pyrun=("$dir/venv/bin/python")
elif [ -d "$dir/site" ] && [ "$(cat "$dir/site/.stamp" 2>/dev/null)" = "$stamp" ]; then
  pyrun=(env "PYTHONPATH=$dir/site" "$py")
else
  rm -rf "$dir/venv" "$dir/site"
  if "$py" -m venv "$dir/venv" >/dev/null 2>&1; then
    "$dir/venv/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$req"
    echo "$stamp" >"$dir/venv/.stamp"
    pyrun=("$dir/venv/bin/python")
  else
    # No venv module (Debian without python3-venv): install into a private directory.
    rm -rf "$dir/venv"
    "$py" -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$dir/site" -r "$req"
    echo "$stamp" >"$dir/site/.stamp"
    pyrun=(env "PYTHONPATH=$dir/site" "$py")
  fi
fi

cd "$here"
export PYTHONDONTWRITEBYTECODE=1
exec "${pyrun[@]}" -m pytest -q -rsx -p no:cacheprovider "$@" test_chart.py
