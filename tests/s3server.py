"""A real S3 API server on loopback for the object-storage tests.

``S3Server`` runs moto's standalone server (``python -m moto.server``, from
``moto[server]``) as a subprocess on 127.0.0.1 and a free port, as s3fs's own
test suite does; the code under test talks to it over HTTP through s3fs and
botocore, unmocked. ``FaultyLink`` is a TCP relay on 127.0.0.1 in front of it
that a test can cut and restore (connections refused and torn down) or make
tear every connection after N bytes, while the server behind it keeps its
state: a network failure, not a server that forgot its buckets.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional

HOST = "127.0.0.1"


def free_port() -> int:
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_listening(port: int, proc: Optional[subprocess.Popen], log: str = "",
                    timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            text = open(log, errors="replace").read() if log else ""
            raise RuntimeError(f"moto server exited with {proc.returncode}: {text[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server did not listen on {HOST}:{port} within {timeout} s")


class S3Server:
    """moto's S3 server on 127.0.0.1 (a subprocess); ``endpoint`` is its URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        # its request log goes to a file: a pipe nobody reads fills up and the server
        # blocks on its next log line (every request)
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT)
        _wait_listening(self.port, self.proc, self.log.name)

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="k", aws_secret_access_key="s")

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict:
        """key -> bytes of every object in ``bucket``."""
        c = self.client()
        out = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                out[o["Key"]] = c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        return out

    def keys(self, bucket: str) -> List[str]:
        c = self.client()
        out = []
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


class FaultyLink:
    """A TCP relay 127.0.0.1:port -> the server, which a test can break.

    ``cut()``: refuse new connections and tear down the open ones; ``restore()``:
    accept again. ``tear_after(n)``: n more bytes go up, then the link is cut in the
    middle of whatever request is going up (an upload broken midway).
    """

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.up = True
        self.budget: Optional[int] = None
        self.uploaded = 0
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((HOST, self.port))
        self._srv.listen(64)
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            try:
                s = socket.create_connection((HOST, self.target))
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns += [c, s]
            threading.Thread(target=self._pipe, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, False), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, upward: bool) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data or not self.up:
                    break
                if upward:
                    with self._lock:
                        room = self.budget
                        if room is not None:
                            self.budget = room - len(data)
                    if room is not None and room < len(data):
                        b.sendall(data[:max(0, room)])
                        self.cut()  # the upload is torn midway; the link stays down
                        break
                    self.uploaded += len(data)
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def tear_after(self, n: int) -> None:
        """Let ``n`` more bytes go up (over all connections), then cut the link."""
        with self._lock:
            self.budget = int(n)

    def restore(self) -> None:
        with self._lock:
            self.budget = None
        self.up = True

    def close(self) -> None:
        self._stopped = True
        self.cut()
        self._srv.close()
