"""Building pandas DataFrames on hot paths (scoring, serving)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def frame_of(
    columns: Sequence[str] | pd.Index, arrays: Sequence[np.ndarray], index: Any = None
) -> pd.DataFrame:
    """A DataFrame of equal-length ``arrays`` named ``columns``.

    When every array has the same non-object dtype the frame is one 2-D block, several
    times cheaper to build than a frame of separate columns; otherwise one column each.
    """
    if arrays and len({a.dtype for a in arrays}) == 1 and arrays[0].dtype != object:
        return pd.DataFrame(np.column_stack(arrays), columns=columns, index=index, copy=False)
    return pd.DataFrame(dict(zip(columns, arrays, strict=True)), index=index, copy=False)
