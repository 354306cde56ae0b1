"""A loopback smart-HTTP git server: `git http-backend` as CGI behind a threaded HTTP server.

Optional HTTP basic auth and an optional throttle (bytes per second on responses),
so a clone of a generated repository can be made to take several seconds.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

GIT = shutil.which("git") or "git"


class GitHttpServer:
    """Serves every repository under `root` at `http://127.0.0.1:PORT/<path>`."""

    def __init__(
        self,
        root: Path,
        *,
        auth: tuple[str, str] | None = None,
        throttle: int | None = None,
        allow_push: bool = False,
        fault: str | None = None,
        fault_after: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        """`fault="drop"` cuts the connection, `fault="stall"` stops sending (and holds the
        connection) after `fault_after` bytes of a pack response."""
        self.root = root
        self.auth = auth
        self.throttle = throttle
        self.allow_push = allow_push
        self.fault = fault
        self.fault_after = fault_after
        self.stalled = threading.Event()
        self.faulted = threading.Event()  # a response reached its fault: tests wait on it
        self.requests: list[tuple[str, str, int]] = []
        self.host = host  # any loopback address: 127.0.0.2 stands for "another host"
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stalled.set()  # release stalled handlers
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str, *, userinfo: str | None = None) -> str:
        host = f"{userinfo}@{self.host}" if userinfo else self.host
        return f"http://{host}:{self.port}/{path}"


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _unauthorized(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            server.requests.append((self.command, self.path, 401))

        def _cgi(self) -> None:
            user = ""
            if server.auth is not None:
                expected = "Basic " + base64.b64encode(":".join(server.auth).encode()).decode()
                if self.headers.get("Authorization", "") != expected:
                    self._unauthorized()
                    return
                user = server.auth[0]
            parts = urlsplit(self.path)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_USER": user,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            }
            if server.allow_push:
                env["GIT_CONFIG_COUNT"] = "1"
                env["GIT_CONFIG_KEY_0"] = "http.receivepack"
                env["GIT_CONFIG_VALUE_0"] = "true"
            for key, value in self.headers.items():
                env["HTTP_" + key.upper().replace("-", "_")] = value
            chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            length = self.headers.get("Content-Length")
            if length and not chunked:
                env["CONTENT_LENGTH"] = length
            with subprocess.Popen(
                [GIT, "http-backend"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            ) as process:
                status = self._relay(process, chunked, length)
            server.requests.append((self.command, self.path, status))

        def _relay(
            self, process: subprocess.Popen[bytes], chunked: bool, length: str | None
        ) -> int:
            feeder = threading.Thread(target=self._feed, args=(process, chunked, length))
            feeder.start()
            assert process.stdout is not None
            status = 200
            headers: list[tuple[str, str]] = []
            while line := process.stdout.readline().rstrip(b"\r\n"):
                key, _, value = line.decode("latin-1").partition(":")
                if key.lower() == "status":
                    status = int(value.strip().split()[0])
                else:
                    headers.append((key, value.strip()))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._stream(process.stdout, faulty=self.command == "POST")
            feeder.join()
            return status

        def _feed(
            self, process: subprocess.Popen[bytes], chunked: bool, length: str | None
        ) -> None:
            assert process.stdin is not None
            try:
                if chunked:
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        process.stdin.write(self.rfile.read(size))
                        self.rfile.readline()
                elif length:
                    process.stdin.write(self.rfile.read(int(length)))
            except BrokenPipeError:
                pass
            finally:
                process.stdin.close()

        def _stream(self, stdout: Any, faulty: bool) -> None:
            chunk_size = 65536 if server.throttle is None else max(1024, server.throttle // 20)
            started, sent = time.monotonic(), 0
            try:
                while chunk := stdout.read1(chunk_size):
                    if faulty and server.fault and sent >= server.fault_after:
                        self._fault()
                        return
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                    if server.throttle is not None:
                        ahead = sent / server.throttle - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a cancelled or timed-out clone)

        def _fault(self) -> None:
            self.wfile.flush()
            server.faulted.set()
            if server.fault == "stall":
                server.stalled.wait(300)
            self.close_connection = True
            self.connection.shutdown(2)  # socket.SHUT_RDWR: the transfer ends mid-pack

    return Handler
