#!/usr/bin/env bash
# Type checks (CI): mypy over the package's checked modules (pyproject.toml [tool.mypy]),
# then over tests/typing/public_api.py, user code that calls the public API, against the
# package as installed (py.typed, _core.pyi). Usage: bash tools/check_types.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet mypy typing_extensions
pkg=$(python -c "import fastconv, os; print(os.path.dirname(fastconv.__file__))")
echo "check_types: package at $pkg"
(cd "$(dirname "$pkg")" && python -m mypy --config-file "$OLDPWD/pyproject.toml" -p fastconv)
python -m mypy --config-file pyproject.toml tests/typing/public_api.py
echo "check_types: OK"
