"""Where a shard set lives: a local folder or an ``s3://bucket/prefix`` URL, behind one small interface.

LitData reads both itself; this class does the few things around it that LitData does not: list a
split's files with their sizes (to refuse a truncated set before a run starts), read and write our
small JSON marker, and upload a set written locally. S3 goes through boto3 (a LitData dependency),
with ``endpoint_url`` for S3-compatible servers (MinIO, moto, Ceph...).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_common.atomic import atomic_write


@dataclass(frozen=True)
class ShardStore:
    """A shard set's location and the options LitData and boto3 need to reach it.

    Args:
        url: A local folder, or ``s3://bucket/prefix``.
        endpoint_url: S3 endpoint of an S3-compatible server, e.g. ``http://127.0.0.1:9000``; ``None``: AWS.
        storage_options: More ``boto3.client("s3", ...)`` arguments (``region_name``, ``aws_access_key_id``...).
    """

    url: str
    endpoint_url: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        return self.url.startswith("s3://")

    def join(self, *parts: str) -> str:
        """``url/part/...`` (a path string for local folders)."""
        if self.remote:
            return "/".join([self.url.rstrip("/"), *parts])
        return str(Path(self.url, *parts))

    def child(self, name: str) -> ShardStore:
        """The store of a sub-folder (a split)."""
        return ShardStore(self.join(name), self.endpoint_url, dict(self.storage_options))

    def litdata_options(self) -> dict[str, Any] | None:
        """``storage_options`` for LitData's ``StreamingDataset``/``optimize`` (``None`` for local folders)."""
        if not self.remote:
            return None
        options = dict(self.storage_options)
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
            allow_plain_http(self.endpoint_url)
        return options

    # --- S3 -------------------------------------------------------------------------------------
    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", **(self.litdata_options() or {}))

    def _bucket_key(self, *parts: str) -> tuple[str, str]:
        bucket, _, key = self.join(*parts)[len("s3://") :].partition("/")
        return bucket, key

    # --- what the checks and the writer use -----------------------------------------------------
    def sizes(self) -> dict[str, int] | None:
        """Every file below this location (relative name -> bytes); ``None`` when it does not exist or is empty."""
        if not self.remote:
            root = Path(self.url)
            if not root.is_dir():
                return None
            found = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
            return found or None
        bucket, prefix = self._bucket_key()
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        found: dict[str, int] = {}
        for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.update({obj["Key"][len(prefix) :]: int(obj["Size"]) for obj in page.get("Contents", [])})
        return found or None

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The JSON file ``name`` below this location; ``None`` when it is absent."""
        if not self.remote:
            path = Path(self.join(name))
            return json.loads(path.read_text()) if path.is_file() else None
        bucket, key = self._bucket_key(name)
        client = self._client()
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``name`` whole: atomically renamed locally, one PUT on S3 (objects appear whole)."""
        text = json.dumps(data, indent=1, sort_keys=True)
        if not self.remote:
            with atomic_write(self.join(name), "w") as f:
                f.write(text)
            return
        bucket, key = self._bucket_key(name)
        self._client().put_object(Bucket=bucket, Key=key, Body=text.encode())

    def upload(self, local_dir: str | os.PathLike, name: str) -> None:
        """Copy the files of ``local_dir`` to ``name/`` below this location (``index.json`` last)."""
        files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == "index.json")  # a reader never sees an index before its chunks
        if not self.remote:
            for path in files:
                target = Path(self.join(name, path.relative_to(local_dir).as_posix()))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            return
        client = self._client()
        for path in files:
            bucket, key = self._bucket_key(name, path.relative_to(local_dir).as_posix())
            client.upload_file(str(path), bucket, key)


def allow_plain_http(endpoint_url: str) -> None:
    """Let LitData's chunk downloads reach an ``http://`` endpoint (a local S3-compatible server).

    LitData 0.2.76 downloads chunks with obstore, whose ``S3Store`` it builds from a fixed
    ``client_options`` dict without ``allow_http``: every GET of an ``http://`` endpoint fails with
    "HTTP error: builder error". Adding the key to that dict is the smallest fix; HTTPS endpoints
    (AWS, most clouds) never need it. Runs in every process that reads (DataLoader workers too).
    """
    if not endpoint_url.startswith("http://"):
        return
    try:
        from litdata.streaming import downloader
    except ImportError:  # pragma: no cover - litdata is a dependency of this package
        return
    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options["allow_http"] = "true"
