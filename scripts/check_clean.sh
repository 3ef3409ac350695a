#!/usr/bin/env bash
# After `make test` in a fresh clone (.ci/run): the tests wrote nothing into the checkout.
# `git status --porcelain --ignored`
# may list only the environment, caches and what `make run` itself writes (mlflow.db, mlruns/,
# outputs/); anything else (a test's mlruns/ artifacts, a report, bench output) fails with its path.
set -euo pipefail
cd "$(dirname "$0")/.."
allowed='^(\.venv/|\.pytest_cache/|src/[^/]*\.egg-info/|mlflow\.db|mlruns/|outputs/)$|(^|/)__pycache__/$'
# Untracked (??) and ignored (!!) entries only: edits of tracked files are not test output.
bad=$(git status --porcelain --ignored --untracked-files=normal | sed -nE 's/^(\?\?|!!) //p' | grep -Ev "$allowed" || true)
if [ -n "$bad" ]; then
  echo "error: the tests left these in the checkout (write into tmp_path instead):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "checkout clean: the tests wrote only into their temp dirs"
