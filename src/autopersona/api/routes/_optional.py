"""Optional modules behind some endpoints: absent → 501 ``not_implemented``."""

from __future__ import annotations

import importlib
from typing import Any

from autopersona.api.errors import ApiError

__all__ = ["optional"]


def optional(module: str, name: str) -> Any:
    """``module.name``, or raise 501 ``not_implemented`` naming what is missing."""
    try:
        mod = importlib.import_module(module)
        return getattr(mod, name)
    except (ImportError, AttributeError):
        raise ApiError(
            501,
            "not_implemented",
            f"{module}.{name} is not available in this installation",
            {"module": module, "name": name},
        ) from None
