"""The planner and the policy engine are pure (issue 17): they import with boto3, botocore,
paramiko, obstore and pycurl absent, so their decisions are testable without a cloud or a
host, and nothing in them can reach one."""

from __future__ import annotations

import subprocess
import sys

import pytest

ABSENT = ("boto3", "botocore", "paramiko", "obstore", "pycurl", "asyncssh", "moto")
PURE = ("relocate.plan", "relocate.plan.model", "relocate.plan.build", "relocate.plan.deadline", "relocate.plan.egress",
        "relocate.policy", "relocate.policy.engine", "relocate.policy.profiles", "relocate.policy.schema",
        "relocate.policy.verdict", "relocate.policy.app", "relocate.policy.render",
        "relocate.shards.partition", "relocate.shards.plan", "relocate.shards.status", "relocate.shards.engines")


@pytest.mark.parametrize("module", PURE)
def test_imports_with_the_io_libraries_absent(module: str) -> None:
    # None in sys.modules makes `import boto3` raise ImportError, as if it were not installed.
    code = f"import sys; sys.modules.update(dict.fromkeys({ABSENT!r})); import {module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-1]


def test_the_check_is_real() -> None:
    # The same probe fails for a module that does need botocore at import (the S3 data
    # path; sources/aws.py itself imports boto3 only when a session is first made).
    code = f"import sys; sys.modules.update(dict.fromkeys({ABSENT!r})); import relocate.sources.s3data"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "'botocore' is not a package" in proc.stderr
