"""Scoring from an online store: a feature spec's features for keys, latest row per key.

The online twin of the point-in-time join: where training takes the feature row at or
before each row's timestamp, online scoring takes the newest published row of each key
(timestamps in the input are not used; a lookup's ``lookback_window`` becomes the read's
TTL, so a row older than the window is treated as missing). ``default_values`` fill
nulls, ``rename_outputs`` name the columns, and feature functions run with the same code
as in training. Columns already in the input are kept and not looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge._frames import frame_of
from lakeforge.errors import SchemaMismatchError
from lakeforge.features._lookups import FeatureFunction, apply_functions
from lakeforge.features.online import OnlineStore


@dataclass(frozen=True)
class _Feature:
    name: str
    output: str
    default: Any


@dataclass(frozen=True)
class _TableLookup:
    """One lookup of a feature spec, prepared once: which columns go where."""

    table: str
    input_keys: tuple[str, ...]  # input columns, matched in order to ...
    table_keys: tuple[str, ...]  # ... the online table's key columns
    ttl: timedelta | None
    features: tuple[_Feature, ...]

    @classmethod
    def from_spec(cls, lookup: dict[str, Any]) -> _TableLookup:
        window = lookup["lookback_window_seconds"]
        return cls(
            table=lookup["table_name"],
            input_keys=tuple(lookup["lookup_key"]),
            table_keys=tuple(lookup["table_primary_keys"]),
            ttl=None if window is None else timedelta(seconds=window),
            features=tuple(
                _Feature(f["name"], f["output_name"], f["default"]) for f in lookup["features"]
            ),
        )

    def read(
        self, store: OnlineStore, data: pd.DataFrame, series: dict[str, pd.Series]
    ) -> dict[str, pa.ChunkedArray]:
        """The output columns not already in ``data`` (its columns: ``series``), in one read."""
        wanted = [f for f in self.features if f.output not in data.columns]
        if not wanted:
            return {}
        keys = {}
        for column, table_key in zip(self.input_keys, self.table_keys, strict=True):
            if column not in data.columns:
                raise SchemaMismatchError(
                    f"lookup on {self.table}: lookup key column {column!r} is not in the "
                    f"scoring input (columns: {', '.join(map(str, data.columns))})"
                )
            keys[table_key] = pa.array(series[column], from_pandas=True)
        found = store.read(
            self.table,
            pa.table(keys),
            keys=list(self.table_keys),
            features=[f.name for f in wanted],
            ttl=self.ttl,
        )
        columns = {}
        for feature in wanted:
            values = found.column(feature.name)
            if feature.default is not None:
                values = pc.fill_null(values, pa.scalar(feature.default, values.type))
            columns[feature.output] = values
        return columns


class OnlineFeatureLookup:
    """Adds a feature spec's features to scoring input from an online store.

    Built once per model and store; each :meth:`frame` call makes one ``store.read`` per
    lookup table and touches no lakehouse table.
    """

    def __init__(self, spec: dict[str, Any], store: OnlineStore) -> None:
        self.store = store
        self._lookups = [_TableLookup.from_spec(lookup) for lookup in spec["lookups"]]
        self._functions = [
            FeatureFunction(f["udf_name"], f["input_bindings"], f["output_name"])
            for f in spec["functions"]
        ]
        self._indexes: dict[tuple[str, ...], pd.Index] = {}

    def frame(self, data: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
        """``data`` with every looked-up and computed feature it does not already have.

        With ``columns``, only those columns, in that order (what the model takes).
        """
        series = {str(c): data[c] for c in data.columns}  # each column taken out once
        arrays: dict[str, Any] = {name: column.to_numpy() for name, column in series.items()}
        for lookup in self._lookups:
            for name, values in lookup.read(self.store, data, series).items():
                arrays[name] = (
                    values.to_numpy() if values.null_count == 0 else values.to_pandas().to_numpy()
                )
        missing = [f for f in self._functions if f.output_name not in arrays]
        if missing:
            frame = apply_functions(pd.DataFrame(arrays, index=data.index), missing)
            return frame if columns is None else frame[columns]
        if columns is None:
            return pd.DataFrame(arrays, index=data.index, copy=False)
        return frame_of(self._index(columns), [arrays[name] for name in columns], index=data.index)

    def _index(self, columns: list[str]) -> pd.Index:
        """``columns`` as a pandas Index, built once (building one costs more than the read)."""
        key = tuple(columns)
        index = self._indexes.get(key)
        if index is None:
            if len(self._indexes) >= 16:
                self._indexes.clear()
            index = self._indexes[key] = pd.Index(columns)
        return index
