"""A minimal keep-alive HTTP/1.1 GET client for latency measurements.

httpx spends about 1.2 ms of Python per request on this machine, more than either server
spends answering a QIDO search, which dilutes the ratio of their latencies. This client
sends a pre-formatted request on one socket (``TCP_NODELAY``) and reads the answer by
Content-Length or chunks; it reconnects once when the server closed an idle connection
(Orthanc closes them after a second).
"""

from __future__ import annotations

import socket
from urllib.parse import urlencode, urlsplit


class RawClient:
    """GETs on one kept connection to ``base`` (``http://host:port/prefix``)."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.reconnects = 0
        self._sock = self._connect()
        self._buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        self._sock.close()

    def _reconnect(self) -> None:
        self._sock.close()
        self._sock, self._buf = self._connect(), b""
        self.reconnects += 1

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            self._fill()
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        """Return the body of a GET of ``prefix + path``; raise unless the status is 200."""
        target = self.prefix + path + ("?" + urlencode(params) if params else "")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: application/dicom+json\r\n\r\n"
        ).encode()
        self._sock.sendall(request)
        try:
            status_line = self._line()
        except (ConnectionError, OSError):  # an idle keep-alive connection the server closed
            self._reconnect()
            self._sock.sendall(request)
            status_line = self._line()
        status = int(status_line.split()[1])
        body, close = self._body()
        if close:
            self._reconnect()
        if status != 200:
            raise RuntimeError(f"GET {target} answered {status}: {body[:300]!r}")
        return body

    def _body(self) -> tuple[bytes, bool]:
        headers: dict[bytes, bytes] = {}
        while line := self._line():
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip()
        close = headers.get(b"connection", b"").lower() == b"close"
        if b"content-length" in headers:
            return self._take(int(headers[b"content-length"])), close
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            raise RuntimeError("an answer with neither Content-Length nor chunks")
        chunks = []
        while size := int(self._line().split(b";")[0], 16):
            chunks.append(self._take(size))
            self._take(2)
        self._line()
        return b"".join(chunks), close
