"""Hash partitions of Arrow rows by key, for the bounded paths that bring every row of a key
together with one GroupByKey over a few partition numbers instead of one element per key
(the join step's bounded join, the top step's batch ranking).

A partition is computed from each key value's text (CRC-32), so it is the same in every
process and for an int32 and an int64 key of equal value.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa


def partition_of(table: pa.Table, keys: Sequence[str], partitions: int) -> np.ndarray:
    """The partition (``0 .. partitions - 1``) of each row of ``table`` from the values of its
    ``keys`` columns (no keys: partition 0)."""
    mixed = np.zeros(table.num_rows, np.uint64)
    for name in keys:
        column = table.column(name).combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        encoded = column.dictionary_encode()
        codes = np.array(
            [zlib.crc32(str(v).encode()) for v in encoded.dictionary.to_pylist()], np.uint64
        )
        indices = encoded.indices.fill_null(len(codes)).to_numpy()  # nulls: one code of their own
        codes = np.append(codes, np.uint64(zlib.crc32(b"\x00null")))
        mixed = mixed * np.uint64(1_000_003) + codes[indices]
    return (mixed % np.uint64(partitions)).astype(np.int64)


def by_partition(
    table: pa.Table, part: np.ndarray, partitions: int, *, empty: bool = False
) -> Iterator[tuple[int, pa.Table]]:
    """``(partition, its rows)`` for each partition, with one ``take`` and then slices (``empty``:
    also the partitions without rows)."""
    order = np.argsort(part, kind="stable")
    ordered = table.take(pa.array(order))
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    for p in range(partitions):
        size = int(bounds[p + 1] - bounds[p])
        if size or empty:
            yield p, ordered.slice(bounds[p], size)
