"""Code files in S3: the key pattern, and the object streamed in chunks (aioboto3).

Keys follow ``codes/{campaign_id}/{type}/<name>``; the type comes from the key.
Credentials come from the standard AWS chain (environment, shared files, instance
role); ``s3_endpoint_url`` points at MinIO, moto or the like. Failures map to API
errors: a missing object is 404 ``NOT_FOUND``, anything the store or its
configuration gets wrong (no bucket, no access, no answer) is 502
``STORAGE_UNAVAILABLE`` naming the store's own error code.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any

import aioboto3
import botocore.config  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]

from dropgate.errors import NotFound, StorageUnavailable, ValidationError
from dropgate.ids import check_type
from dropgate.settings import Settings

CHUNK_BYTES = 256 * 1024
_KEY_RE = re.compile(r"^codes/(?P<campaign>[^/]+)/(?P<type>[^/]+)/(?P<name>[^\x00-\x1f]{1,900})$")
# Bounded: a store that does not answer is a quick 502, not a request hanging on retries.
_CLIENT_CONFIG = botocore.config.Config(connect_timeout=5, read_timeout=30,
                                        retries={"max_attempts": 2, "mode": "standard"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def type_of_key(campaign_id: str, file_key: str) -> str:
    """The code type named by ``file_key``; 400 unless it is ``codes/{campaign_id}/{type}/...``."""
    match = _KEY_RE.match(file_key) if isinstance(file_key, str) else None
    if match is None or match.group("campaign") != campaign_id or match.group("name").endswith("/"):
        raise ValidationError(
            f"file_key must look like codes/{campaign_id}/<type>/<file name>.",
            details={"field": "file_key", "expected": f"codes/{campaign_id}/<type>/<file>"},
        )
    return check_type(match.group("type"), "file_key")


def _storage_error(exc: Exception, bucket: str, file_key: str) -> Exception:
    if isinstance(exc, botocore.exceptions.ClientError):
        err: dict[str, Any] = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        if code in _MISSING:
            return NotFound(f"No object {file_key} in bucket {bucket}.",
                            details={"file_key": file_key, "bucket": bucket})
        return StorageUnavailable(
            f"The file store refused to read {file_key}: {code or 'error'}.",
            details={"file_key": file_key, "bucket": bucket, "storage_error": code,
                     "storage_message": str(err.get("Message", ""))[:200]},
        )
    return StorageUnavailable(f"The file store did not answer: {type(exc).__name__}.",
                              details={"file_key": file_key, "bucket": bucket,
                                       "storage_error": type(exc).__name__})


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); 400 for anything else."""
    rest = url[len("s3://"):] if url.startswith("s3://") else ""
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ValidationError(f"{url!r} is not an s3://bucket/key URL.", details={"field": "file"})
    return bucket, key


async def s3_chunks(settings: Settings, file_key: str, *,
                    bucket: str | None = None) -> AsyncGenerator[bytes, None]:
    """Yield the object's bytes in chunks; never holds the whole object. The bucket is
    ``DROPGATE_S3_BUCKET`` unless one is given (``dropgate codes upload s3://...``)."""
    bucket = bucket or settings.s3_bucket
    if not bucket:
        raise StorageUnavailable("No S3 bucket is configured (DROPGATE_S3_BUCKET).",
                                 details={"file_key": file_key})
    session = aioboto3.Session()
    try:
        async with session.client("s3", endpoint_url=settings.s3_endpoint_url,
                                  region_name=settings.s3_region, config=_CLIENT_CONFIG) as s3:
            response = await s3.get_object(Bucket=bucket, Key=file_key)
            body = response["Body"]
            try:
                while True:
                    chunk = await body.read(CHUNK_BYTES)
                    if not chunk:
                        return
                    yield chunk
            finally:
                body.close()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
        raise _storage_error(exc, bucket, file_key) from exc
