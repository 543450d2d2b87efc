"""An S3 Inventory report as a bucket's listing (`source.s3[].inventory:`).

AWS's own way to enumerate billions of objects: a daily or weekly report whose
manifest.json names its data files (documented format: "fileFormat" CSV | ORC | Parquet,
"fileSchema" the column names, "files"[].key the data files, in the destination bucket
the manifest's "destinationBucket" ARN names). CSV files are gzip-compressed, without a
header, with keys URL-encoded; Parquet files are read with pyarrow when it is installed
(else exit 2 naming the format). Only current versions are listed: rows of older
versions and delete markers (IsLatest false, IsDeleteMarker true) are skipped.

The report is as old as its date: objects added since are not in it. `plan` says which
report it read; the shard workers list their range live anyway (shards/worker.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from typing import Any, Iterator
from urllib.parse import unquote_plus

from relocate.errors import ConfigError, SourceError
from relocate.sources.aws import Aws, translate
from relocate.sources.inventory import ObjectInfo


def parse_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _get(s3: Any, bucket: str, key: str) -> Any:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as exc:
        raise translate(exc, f"s3://{bucket}/{key}") from exc


def read_manifest(aws: Aws, url: str) -> dict[str, Any]:
    bucket, key = parse_url(url)
    try:
        doc = json.loads(_get(aws.client("s3"), bucket, key).read())
    except ValueError as exc:
        raise ConfigError(f"inventory {url}: not a manifest.json ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise ConfigError(f"inventory {url}: not an S3 Inventory manifest (no \"files\")")
    return doc


def _files_bucket(doc: dict[str, Any], url: str) -> str:
    dest = str(doc.get("destinationBucket") or "")
    return dest.rsplit(":", 1)[-1] if dest else parse_url(url)[0]


def inventory_objects(aws: Aws, url: str, bucket: str) -> list[ObjectInfo]:
    """Every current object of `bucket` the report lists, sorted by key (S3's order)."""
    doc = read_manifest(aws, url)
    fmt = str(doc.get("fileFormat") or "CSV").upper()
    source = str(doc.get("sourceBucket") or bucket)
    if source != bucket:
        raise ConfigError(f"inventory {url}: a report of bucket {source!r}, not {bucket!r}")
    files_bucket = _files_bucket(doc, url)
    s3 = aws.client("s3")
    out: list[ObjectInfo] = []
    for f in doc["files"]:
        key = str(f["key"])
        if fmt == "CSV":
            rows = _csv_rows(_get(s3, files_bucket, key), str(doc.get("fileSchema") or ""))
        elif fmt == "PARQUET":
            rows = _parquet_rows(_get(s3, files_bucket, key).read(), url)
        else:
            raise ConfigError(f"inventory {url}: fileFormat {fmt} is not read by relocate (CSV, or Parquet with pyarrow)")
        for row in rows:
            if row.get("bucket", bucket) != bucket or str(row.get("islatest", "true")).lower() == "false" \
                    or str(row.get("isdeletemarker", "false")).lower() == "true":
                continue
            out.append(ObjectInfo(row["key"], int(row.get("size") or 0), str(row.get("etag") or "").strip('"'),
                                  _epoch(row.get("lastmodifieddate"))))
    out.sort(key=lambda o: o.key)
    return out


def _csv_rows(body: Any, schema: str) -> Iterator[dict[str, Any]]:
    cols = [c.strip().lower() for c in schema.split(",")]
    if "key" not in cols:
        raise SourceError(f"inventory fileSchema {schema!r} has no Key column")
    text = io.TextIOWrapper(gzip.GzipFile(fileobj=body), encoding="utf-8", newline="")
    for rec in csv.reader(text):
        row = dict(zip(cols, rec))
        row["key"] = unquote_plus(row["key"])  # CSV reports URL-encode keys
        yield row


def _parquet_rows(data: bytes, url: str) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq  # optional: not a dependency of relocate
    except ImportError:
        raise ConfigError(f"inventory {url}: a Parquet report needs pyarrow (pip install pyarrow), "
                          "or configure the report as CSV") from None
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow's own errors: a damaged or mislabelled file
        raise SourceError(f"inventory {url}: a data file is not readable as Parquet ({exc})") from None
    names = [n.lower() for n in table.column_names]
    for rec in table.to_pylist():
        yield {n: v for n, v in zip(names, rec.values())}


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if not value:
        return 0.0
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
