#!/usr/bin/env bash
# Type checks (CI): mypy over the package's checked modules (pyproject.toml [tool.mypy]),
# then over tests/typing/public_api.py, user code that calls the public API, against the
# package as installed (py.typed, _core.pyi). Usage: bash tools/check_types.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet mypy typing_extensions
pkg=$(python -c "import fastconv, os; print(os.path.dirname(fastconv.__file__))")
echo "check_types: package at $pkg"
repo=$(pwd)
# from a neutral folder, so that the installed package (found through py.typed) is checked
(cd "$(mktemp -d)" && python -m mypy --config-file "$repo/pyproject.toml" -p fastconv)
python -m mypy --config-file pyproject.toml tests/typing/public_api.py
echo "check_types: OK"
