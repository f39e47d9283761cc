"""The seeds' PHP buffer server and client (tests/php/buffer_*.php) and ours talk to each other.

Skipped when ``php`` with the sockets module is missing; CI installs Debian's
php-cli (see .ci/run) so these always run there.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipclab import bufclient

PHP_DIR = Path(__file__).resolve().parent / "php"
pytestmark = pytest.mark.timeout(60)


def _has_php_sockets() -> bool:
    if not shutil.which("php"):
        return False
    out = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=30).stdout
    return "sockets" in out.split()


needs_php = pytest.mark.skipif(not _has_php_sockets(),
                               reason="php with the sockets module is not installed")


class PHPServer:
    """tests/php/buffer_server.php serving ``clients`` clients one after another."""

    def __init__(self, clients: int):
        self.proc = subprocess.Popen(["php", str(PHP_DIR / "buffer_server.php"), "127.0.0.1",
                                      "0", str(clients)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline()
        match = re.match(r"listening on 127\.0\.0\.1:(\d+)$", first.strip())
        assert match, first
        self.port = int(match.group(1))

    def finish(self) -> str:
        """Wait for it to serve its clients and exit; return what it printed."""
        try:
            out, _ = self.proc.communicate(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        assert self.proc.returncode == 0, out
        return out


def python_client(port: int, *lines: str) -> str:
    args = [sys.executable, "-m", "ipclab", "client", "--port", str(port)]
    for line in lines:
        args += ["--send", line]
    done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout


def php_client(port: int, *lines: str) -> str:
    done = subprocess.run(["php", str(PHP_DIR / "buffer_client.php"), "127.0.0.1", str(port),
                           *lines], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


SCENARIO = [("Some data", "café ✓"), (), ("--crlf", "sent the seed's way"), ()]
TRANSCRIPT = ["no data\nInformation Received\nInformation Received\n",
              "café ✓\n",
              "café ✓\nInformation Received\n",
              "sent the seed's way\n"]


@needs_php
def test_our_client_against_the_php_server():
    server = PHPServer(clients=3)
    try:
        assert python_client(server.port, "Some data", "café ✓") == TRANSCRIPT[0]
        assert python_client(server.port) == "café ✓\n"
        assert bufclient.exchange("127.0.0.1", server.port, ["last"]).greeting == "café ✓"
    finally:
        out = server.finish()
    assert out.splitlines() == ["Socket connected", "buffer: Some data", "buffer: café ✓",
                                    "closed the socket", "Socket connected", "closed the socket",
                                    "Socket connected", "buffer: last", "closed the socket"]


@needs_php
def test_the_php_client_against_our_server():
    with bufclient.ServerProcess() as server:
        got = [php_client(server.port, *lines) for lines in SCENARIO]
    assert got == TRANSCRIPT
    log = [re.sub(r" from 127\.0\.0\.1:\d+", "", line) for line in server.log()]
    assert log[1:] == ["client 1 connected", "client 1 disconnected after 2 lines",
                       "client 2 connected", "client 2 disconnected after 0 lines",
                       "client 3 connected", "client 3 disconnected after 1 line",
                       "client 4 connected", "client 4 disconnected after 0 lines",
                       "stopped: 4 connections served, 3 lines stored"]


@needs_php
def test_both_servers_give_the_php_client_the_same_transcript():
    server = PHPServer(clients=len(SCENARIO))
    try:
        from_php = [php_client(server.port, *lines) for lines in SCENARIO]
    finally:
        server.finish()
    assert from_php == TRANSCRIPT  # the same lines test_the_php_client_against_our_server sees
