"""``python -m fastconv.bench``: see ``fastconv.bench.cli``."""
from .cli import main

raise SystemExit(main())
