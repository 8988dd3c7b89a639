"""Reading tabular files users bring (CSV, JSON Lines, Parquet) into columns, without pandas.

pandas is kept out of the runtime on purpose (scikit-learn imports it at start when installed), so
files become ``dict[column, list]`` and the schema decides types.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from loopml.errors import IntegrityError, InvalidInput

Columns = dict[str, list[Any]]
FORMATS = ("csv", "jsonl", "parquet")


def detect_format(name: str) -> str:
    lowered = name.lower().removesuffix(".gz")
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith(".parquet"):
        return "parquet"
    raise InvalidInput(f"{name}: unsupported file type; use one of .csv, .jsonl, .parquet")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_sha256(data: bytes, expected: str, where: str) -> None:
    """IntegrityError unless ``data`` hashes to the SHA-256 recorded for it: checked before anything parses it."""
    actual = sha256_hex(data)
    if actual != expected:
        raise IntegrityError(f"{where}: SHA-256 {actual} does not match the registered {expected}")


def read_table(data: bytes, name: str) -> Columns:
    """Parse ``data`` (named ``name`` for format detection and messages) into columns."""
    fmt = detect_format(name)
    if name.lower().endswith(".gz"):
        import gzip

        try:
            data = gzip.decompress(data)
        except OSError as exc:
            raise InvalidInput(f"{name}: not a valid gzip file ({exc})") from None
    if fmt == "csv":
        return _read_csv(data, name)
    if fmt == "jsonl":
        return _read_jsonl(data, name)
    return _read_parquet(data, name)


def read_path(path: str | Path) -> tuple[Columns, str]:
    """Columns and the SHA-256 of the file's bytes (training lineage points at exactly these bytes)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"{p}: no such file")
    data = p.read_bytes()
    return read_table(data, p.name), sha256_hex(data)


def _read_csv(data: bytes, name: str) -> Columns:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name}: not UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise InvalidInput(f"{name}: empty file or missing header row")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise InvalidInput(f"{name}: duplicate column names in header")
    columns: Columns = {h: [] for h in header}
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInput(f"{name}: line {lineno} has {len(row)} fields, header has {len(header)}")
        for h, v in zip(header, row, strict=True):
            columns[h].append(v)
    return _non_empty(columns, name)


def _read_jsonl(data: bytes, name: str) -> Columns:
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(data.decode("utf-8-sig", errors="strict").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{name}: line {lineno} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InvalidInput(f"{name}: line {lineno} is not a JSON object")
        records.append(record)
    return _non_empty(records_to_columns(records), name)


def _read_parquet(data: bytes, name: str) -> Columns:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInput(f"{name}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise InvalidInput(f"{name}: not a readable Parquet file ({exc})") from None
    return _non_empty({k: list(v) for k, v in table.to_pydict().items()}, name)


def records_to_columns(records: list[dict[str, Any]]) -> Columns:
    """Missing keys become None, so rows with sparse fields still line up."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {k: [r.get(k) for r in records] for k in names}


def write_csv(columns: Columns) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in zip(*columns.values(), strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode()


def _non_empty(columns: Columns, name: str) -> Columns:
    if not columns or not next(iter(columns.values())):
        raise InvalidInput(f"{name}: no data rows")
    return columns
