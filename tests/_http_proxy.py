"""The skeleton the tests' HTTP proxies share (FaultProxy in test_s3, CuttingProxy in
test_s3_reads, GcsProxy in test_gcs): a quiet HTTP/1.1 handler that reads a request's body,
forwards the request to the upstream server (moto, the GCS emulator) and sends its reply back, or
a part of it, or an error of the proxy's own; and a threaded server on a free port of 127.0.0.1.
Each proxy keeps its own faults and records."""

from __future__ import annotations

import http.client
import http.server

HOP_HEADERS = ("transfer-encoding", "connection", "content-length")  # not passed on as they came


def forward(
    upstream: tuple[str, int], method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request to the upstream server, on a connection of its own: its response and body."""
    conn = http.client.HTTPConnection(*upstream, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """A handler whose subclass defines `_handle` with the helpers below; `serve` sets
    `upstream`."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]

    def log_message(self, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward(
        self, body: bytes, drop: tuple[str, ...] = ()
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """This request, sent upstream without its Connection header and the headers in `drop`."""
        dropped = {"connection", *(h.lower() for h in drop)}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        return forward(self.upstream, self.command, self.path, body, headers)

    def send_reply(self, status: int, content_type: str, payload: bytes) -> None:
        """An answer of the proxy's own (an injected error)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def send_forwarded(
        self,
        resp: http.client.HTTPResponse,
        data: bytes,
        sent: bytes | None = None,
        skip: tuple[str, ...] = (),
    ) -> None:
        """The upstream's status and headers (less the hop-by-hop ones and those in `skip`) with
        the Content-Length of `data`, then `sent` (`data` unless given: a part of it to cut a
        reply short); a HEAD's reply has no body."""
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_HEADERS and k.lower() not in skip:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data if sent is None else sent)
            self.wfile.flush()


def serve(
    handler: type[ProxyHandler], upstream: str
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A threaded server of `handler` on a free port of 127.0.0.1, forwarding to `upstream`
    (http://host:port), and its URL. The caller runs serve_forever on a thread."""
    host, port = upstream.rsplit("//", 1)[1].split(":")
    handler.upstream = (host, int(port))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    return server, f"http://127.0.0.1:{server.server_address[1]}"
