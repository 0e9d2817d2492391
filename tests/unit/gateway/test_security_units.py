"""Issue 19 (settings and uploads): production refuses the example credentials that ship in
.env.example and the dev overlay; presigned PUT URLs sign the body's length."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from loraforge.gateway.presign import presigned_put_sized
from loraforge.runtime.errors import ConfigurationError
from loraforge.runtime.settings import S3Settings, Settings

ROOT = Path(__file__).resolve().parents[3]
REAL_SECRET = "q8Zt1vRw0pLk3nXe7sYb"


def _template_credentials() -> list[tuple[str, str]]:
    """(setting, value) of every S3 credential in the shipped templates."""
    env = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    secret = yaml.safe_load((ROOT / "k8s/overlays/dev/secret.yaml").read_text())["stringData"]
    creds = [("secret_key", env["LORAFORGE_S3_SECRET_KEY"]), ("access_key", env["LORAFORGE_S3_ACCESS_KEY"]),
             ("secret_key", env["MINIO_ROOT_PASSWORD"]),
             ("secret_key", secret["LORAFORGE_S3__SECRET_KEY"]),
             ("access_key", secret["LORAFORGE_S3__ACCESS_KEY"])]
    assert len(creds) == 5 and all(v for _, v in creds)
    return creds


@pytest.mark.parametrize(("field", "value"), _template_credentials())
def test_production_refuses_the_example_credentials_naming_the_setting(field: str, value: str) -> None:
    s3 = {"secret_key": REAL_SECRET, field: value}
    with pytest.raises(ConfigurationError, match=f"LORAFORGE_S3__{field.upper()}"):
        Settings(env="production", s3=s3)
    Settings(env="development", s3=s3)  # development runs on them


def test_production_accepts_real_credentials() -> None:
    assert Settings(env="production", s3={"access_key": "lf-prod-7f2c", "secret_key": REAL_SECRET})
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        Settings(env="production", s3={"secret_key": REAL_SECRET},
                 captioning={"openai_api_key": "CHANGE_ME"})


def test_presigned_put_signs_content_length_per_sigv4() -> None:
    """The AWS documentation's example credentials and date; the URL names content-length
    among the signed headers and a different size gives a different signature."""
    s3 = S3Settings(endpoint="examplebucket.s3.amazonaws.com:443", access_key="AKIAIOSFODNN7EXAMPLE",
                    secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", secure=True)
    when = datetime(2013, 5, 24, tzinfo=UTC)
    url = presigned_put_sized(s3, "raw", "_staging/gw.a.b.c", 1000, 3600, now=when)
    q = parse_qs(urlsplit(url).query)
    assert q["X-Amz-SignedHeaders"] == ["content-length;host"]
    assert q["X-Amz-Credential"] == ["AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"]
    assert q["X-Amz-Date"] == ["20130524T000000Z"] and q["X-Amz-Expires"] == ["3600"]
    assert urlsplit(url).path == "/raw/_staging/gw.a.b.c"
    other = presigned_put_sized(s3, "raw", "_staging/gw.a.b.c", 1001, 3600, now=when)
    assert parse_qs(urlsplit(other).query)["X-Amz-Signature"] != q["X-Amz-Signature"]
    with pytest.raises(ValueError):
        presigned_put_sized(s3, "raw", "k", 10, 8 * 24 * 3600)
