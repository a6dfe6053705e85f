"""Tag extraction to Parquet: the same rows as the CSV, with a type per column for analysis code.

The rows are collected first because a Parquet file has one schema: a column is ``int64`` when all
its values are integers, ``double`` when they are numbers, ``bool`` when booleans, else ``string``.
Empty values (no value found and no default) are nulls, not empty strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydicom import Dataset

from dicomgate.access.extract import Extractor


def column_array(values: list[Any]) -> pa.Array:
    """Return ``values`` as one typed Arrow array ("" is null)."""
    cleaned = [None if value == "" else value for value in values]
    present = [value for value in cleaned if value is not None]
    if present and all(isinstance(value, bool) for value in present):
        return pa.array(cleaned, type=pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(cleaned, type=pa.int64())
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in cleaned], type=pa.float64())
    return pa.array([None if v is None else str(v) for v in cleaned], type=pa.string())


def write_parquet(
    extractor: Extractor, sources: Iterable[Dataset | Mapping[str, str]], path: Path
) -> int:
    """Write one row per source to the Parquet file ``path``; return the number of rows."""
    columns: dict[str, list[Any]] = {name: [] for name in extractor.columns}
    count = 0
    for source in sources:
        for name, value in extractor.row(source).items():
            columns[name].append(value)
        count += 1
    table = pa.table({name: column_array(values) for name, values in columns.items()})
    # Written beside the target, then renamed: a failed run leaves no half file to analyse.
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial)
    partial.replace(path)
    return count
