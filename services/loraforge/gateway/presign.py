"""Presigned PUT URLs that bind the body's size (AWS Signature V4, query-string auth).

The object-store SDK signs only `host`, so a presigned PUT accepts a body of any size and the
declared size is a wish. Here `content-length` is a signed header too: the S3 server
recomputes the signature from the request's actual Content-Length, so a PUT with any other
length (bigger or smaller, or chunked without one) fails the signature check (403) and
nothing is stored. That is the general S3 rule (AWS, MinIO, SeaweedFS all build the canonical
request from the headers named in X-Amz-SignedHeaders).

Spec: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote

from loraforge.runtime.settings import S3Settings

# Longest presigned URL lifetime S3 accepts (7 days).
MAX_EXPIRES_S = 7 * 24 * 3600


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def presigned_put_sized(
    s3: S3Settings, bucket: str, key: str, size: int, expires_s: int, now: datetime | None = None
) -> str:
    """A path-style URL for `PUT /<bucket>/<key>` that only a body of exactly `size` bytes
    passes."""
    if not 1 <= expires_s <= MAX_EXPIRES_S:
        raise ValueError(f"expires_s must be 1..{MAX_EXPIRES_S}, not {expires_s}")
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    when = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = when.strftime("%Y%m%d")
    scope = f"{day}/{s3.region}/s3/aws4_request"
    host = s3.endpoint  # HOST:PORT as clients send it in the Host header
    path = "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")
    signed_headers = "content-length;host"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{s3.access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires_s),
        "X-Amz-SignedHeaders": signed_headers,
    }
    query = "&".join(
        f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(params.items())
    )
    canonical = "\n".join(
        [
            "PUT",
            path,
            query,
            f"content-length:{size}\nhost:{host}\n",
            signed_headers,
            "UNSIGNED-PAYLOAD",
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    k = _hmac(("AWS4" + s3.secret_key.get_secret_value()).encode(), day)
    for part in (s3.region, "s3", "aws4_request"):
        k = _hmac(k, part)
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    scheme = "https" if s3.secure else "http"
    return f"{scheme}://{host}{path}?{query}&X-Amz-Signature={signature}"
