from __future__ import annotations

import pytest

from loraforge.runtime.errors import ConfigurationError
from loraforge.runtime.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LORAFORGE_"):
            monkeypatch.delenv(key)


def test_nested_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORAFORGE_NATS__URL", "nats://nats:4222")
    monkeypatch.setenv("LORAFORGE_S3__ENDPOINT", "minio:9000")
    monkeypatch.setenv("LORAFORGE_NATS__BACKOFF_S", "[1, 2]")
    s = load_settings()
    assert s.nats.url == "nats://nats:4222"
    assert s.s3.endpoint == "minio:9000"
    assert s.nats.backoff_s == (1.0, 2.0)


@pytest.mark.parametrize("name", ["LORAFORGE_NATS__URLL", "LORAFORGE_TYPO", "LORAFORGE_S3__"])
def test_unknown_settings_are_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "x")
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


@pytest.mark.parametrize("secret", ["change-me", "minioadmin", "loraforge-dev-secret", "short"])
def test_production_refuses_placeholder_secrets(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("LORAFORGE_ENV", "production")
    monkeypatch.setenv("LORAFORGE_S3__SECRET_KEY", secret)
    with pytest.raises(ConfigurationError, match="LORAFORGE_S3__SECRET_KEY"):
        load_settings()


def test_development_accepts_the_dev_default_and_production_a_real_secret(monkeypatch) -> None:
    assert load_settings().s3.secret_key.get_secret_value() == "loraforge-dev-secret"
    monkeypatch.setenv("LORAFORGE_ENV", "production")
    monkeypatch.setenv("LORAFORGE_S3__SECRET_KEY", "a-real-secret-of-length")
    assert load_settings().env == "production"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("LORAFORGE_NATS__URL", "http://x", "nats://"),
        ("LORAFORGE_S3__ENDPOINT", "http://minio:9000", "HOST:PORT"),
        ("LORAFORGE_NATS__MAX_DELIVER", "0", "MAX_DELIVER"),
        ("LORAFORGE_LOG__FORMAT", "xml", "FORMAT"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, name: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=fragment):
        load_settings()


def test_secret_is_not_printed() -> None:
    assert "loraforge-dev-secret" not in repr(load_settings())
