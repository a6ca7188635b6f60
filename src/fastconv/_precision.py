"""What "auto" may pick: ``set_precision("highest")`` (the default) allows only algorithms
whose error stays within the definition's bound (the bound the test suite applies to every
algorithm); ``"medium"`` also allows reduced-accuracy ones (Winograd's larger transform
error, see docs/architecture.md). ``FASTCONV_PRECISION=highest|medium`` sets it at import.
An explicit ``algorithm="winograd"`` always runs Winograd, whatever the setting."""
from __future__ import annotations

import os
import warnings

from . import _core

PRECISIONS = {"highest": _core.PRECISION_HIGHEST, "medium": _core.PRECISION_MEDIUM}
_precision = "highest"


def set_precision(precision: str) -> None:
    """``"highest"``: "auto" never picks a reduced-accuracy algorithm; ``"medium"``: it may
    (Winograd, where it is faster)."""
    global _precision
    if not isinstance(precision, str) or precision.lower() not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    _precision = precision.lower()


def get_precision() -> str:
    """The current setting of ``set_precision``."""
    return _precision


def precision_code() -> int:
    return PRECISIONS[_precision]


def apply_precision_from_env() -> None:
    wanted = os.environ.get("FASTCONV_PRECISION", "").strip().lower()
    if not wanted:
        return
    if wanted not in PRECISIONS:
        warnings.warn(f"FASTCONV_PRECISION={wanted!r} is not one of {sorted(PRECISIONS)}; ignored",
                      RuntimeWarning, stacklevel=3)
        return
    set_precision(wanted)
