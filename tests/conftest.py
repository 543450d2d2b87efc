"""Shared fixtures: real servers (tests/servers.py), started lazily, once per session.

Policy for a server that cannot start here: with CI=true the test fails (CI
must prove everything), otherwise it is skipped with the reason, so a laptop
without mariadb still runs the rest. Both live in one place: ``require``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import servers` without a tests package
import servers  # noqa: E402

# --- process-wide isolation, at import so it precedes every test and fixture.
# No test may read or write the real ~/.ssh, ~/.aws or ~/.config: HOME is a
# fresh dir for this session, and AWS credentials are fixed dummies.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="relocate-test-home-"))
os.environ["HOME"] = str(_SESSION_HOME)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_var, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


T = TypeVar("T")


def require(start_fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Start a server, or fail (CI=true) / skip (elsewhere) saying why it could not."""
    try:
        return start_fn(*args, **kwargs)
    except servers.ServerUnavailable as e:
        msg = f"{start_fn.__name__}: {e.reason}"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


# --- ssh targets


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Sshd]:
    server = require(servers.start_sshd, tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Sshd]:
    """A second, independent sshd (other port, host key, client key, root)."""
    server = require(servers.start_sshd, tmp_path_factory.mktemp("sshd2"))
    yield server
    server.stop()


# --- AWS APIs (moto)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[servers.Moto]:
    server = require(servers.start_moto)
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server: servers.Moto) -> str:
    """A clean moto for this test; returns its endpoint_url."""
    moto_server.reset()
    return moto_server.endpoint_url


# --- S3 data


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.SeaweedS3]:
    server = require(servers.start_seaweedfs, tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(params=["moto", "seaweedfs"])
def s3_server(request: pytest.FixtureRequest) -> servers.S3Server:
    """Runs the test once against moto and once against SeaweedFS."""
    if request.param == "moto":
        endpoint = request.getfixturevalue("moto")  # reset per test
        return servers.S3Server("moto", endpoint, "testing", "testing")
    weed: servers.SeaweedS3 = request.getfixturevalue("seaweedfs")
    return servers.S3Server("seaweedfs", weed.endpoint_url, weed.access_key, weed.secret_key)


# --- databases


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Postgres]:
    server = require(servers.start_postgres, tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Postgres]:
    """A second, independent PostgreSQL cluster: the target side of a database move."""
    server = require(servers.start_postgres, tmp_path_factory.mktemp("postgres-target"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.MariaDB]:
    server = require(servers.start_mariadb, tmp_path_factory.mktemp("mariadb"))
    yield server
    server.stop()


# --- a batch engine


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A one-node Slurm cluster (tests/slurm.py): slurmctld, slurmd and munged of their own."""
    import slurm as slurm_cluster

    cluster = require(slurm_cluster.start_slurm, tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()
