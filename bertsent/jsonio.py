"""JSON that every parser reads, for every file bertsent writes (metrics, settings, results)."""

from __future__ import annotations

import json
import math
from typing import Any


def strict_json(obj: Any, **kwargs: Any) -> str:
    """JSON that every parser reads: NaN and infinities (a diverged loss) become null."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), allow_nan=False, **kwargs)
