"""An S3 endpoint on 127.0.0.1 (moto's server) for the tests and the object-storage
benchmark: never a real endpoint. And a copy of a store's objects on disk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
)


def start() -> tuple[subprocess.Popen[bytes], str]:
    """Start moto's server on a free port and point the AWS variables at it; (the
    process, its URL). ``RuntimeError`` if it does not answer within 30 s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto's S3 server did not start on {url}") from None
            time.sleep(0.1)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
    )
    return server, url


def download(root: str, to: Path) -> Path:
    """Every object of the store at the URL ``root``, as files under ``to``; ``to``."""
    from store.location import RemotePath, store_path

    remote = store_path(root)
    assert isinstance(remote, RemotePath)
    for name in remote.find():
        target = to / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((remote / name).read_bytes())
    return to
