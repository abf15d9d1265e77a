"""A real AWS API on loopback: moto's server, one for every service (EC2, Auto Scaling, S3...), in a thread.

Tests talk to it with boto3 and `endpoint_url`; nothing leaves 127.0.0.1. State lives as long as the server
(the session): tests sharing it keep apart by name (their own VPC, tags, groups, buckets).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Credentials and settings for boto3 that point nowhere real: no profile files, no instance metadata.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}
# Variables that would send boto3 elsewhere or to other credentials.
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ROLE_ARN",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI")
LOOPBACK = "127.0.0.1"


@contextmanager
def aws_environment() -> Iterator[None]:
    """Point boto3 at test credentials (and past any proxy for loopback) until the block ends; restore after."""
    with pytest.MonkeyPatch.context() as patch:
        for name in AWS_UNSET:
            patch.delenv(name, raising=False)
        for name, value in AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, ",".join(filter(None, [os.environ.get(name), LOOPBACK])))
        yield


@contextmanager
def running() -> Iterator[str]:
    """Start moto's server on 127.0.0.1 (a free port, chosen by the kernel); yield its URL; stop it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line on stderr per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the socket listens
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()

