"""Small proxies in front of the live portal, to make the network misbehave for real.

``TcpProxy`` relays bytes and can go down (connections refused, exchanges in flight cut,
or the next answer lost on its way back) and come back on the same port.
``FlakyHttpProxy`` forwards each request to the portal and can throw the portal's answer
away: answering 503 with ``Retry-After`` instead, or answering nothing until the client has
given up. Either way the portal did the work, and the client does not know it. It can also
refuse a request with a status of its own without forwarding it, and rewrite the portal's
answers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 80


class TcpProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream = _address(upstream_url)
        self.port: int | None = None
        self.connections = 0
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Thread]] = []
        self._lock = threading.Lock()
        self._lose_next_answer = threading.Event()
        self.stopped = threading.Event()  # set once a stop has finished

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def lose_next_answer(self) -> None:
        """Goes down the moment the portal starts answering the next request: the portal
        did the work (it answers once its transaction committed), the client never hears."""
        self.stopped.clear()
        self._lose_next_answer.set()

    def _answer_arrives(self) -> bool:
        if not self._lose_next_answer.is_set():
            return False
        self._lose_next_answer.clear()
        threading.Thread(target=self.stop, daemon=True).start()
        return True  # this answer is not passed on

    def start(self) -> None:
        self.stopped.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port or 0))
        listener.listen(128)
        listener.settimeout(0.1)  # so the accepting thread notices when the proxy goes down
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Down: new connections are refused and open ones cut at once. Returns once the
        portal has finished what it was doing for them (their answers are lost)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _shutdown(listener, socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream, _ in pairs:
            _shutdown(client, socket.SHUT_RDWR)
            _shutdown(upstream, socket.SHUT_WR)  # the portal finishes, then sees the end
        for client, upstream, answers in pairs:
            if answers is not threading.current_thread():
                answers.join(timeout=30)
            client.close()
            upstream.close()
        self.stopped.set()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self.connections += 1
            requests = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
            answers = threading.Thread(
                target=_pump, args=(upstream, client, self._answer_arrives), daemon=True
            )
            with self._lock:
                self._pairs.append((client, upstream, answers))
            requests.start()
            answers.start()


def _pump(source: socket.socket, target: socket.socket, withhold=None) -> None:
    """Copies until ``source`` ends; keeps reading after ``target`` is gone (or after
    ``withhold()`` said to pass nothing more on)."""
    target_open = True
    while True:
        try:
            data = source.recv(65536)
        except OSError:
            break
        if not data:
            break
        if target_open and withhold is not None and withhold():
            target_open = False
        if target_open:
            try:
                target.sendall(data)
            except OSError:
                target_open = False
    if target_open:
        _shutdown(target, socket.SHUT_WR)


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    portal_status: int
    answered: int


@dataclass
class FlakyHttpProxy:
    upstream_url: str
    spoil: int = 0  # how many of the next attempts lose the portal's answer
    # "503": answer 503 + Retry-After; "silence": answer nothing in time; "refuse": answer
    # ``refuse_status`` without forwarding the request (the portal never sees it)
    mode: str = "503"
    retry_after: str = "1"
    silence_seconds: float = 3.0
    refuse_status: int = 422
    refuse_code: str = "validation_error"
    rewrite: Callable[[bytes], bytes] | None = None  # applied to the answers passed on
    # A request holding an event with this key is answered 500 without being forwarded:
    # an event the portal fails on whenever it is sent.
    poison: str | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _relay(self) -> None:
                proxy._relay(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def bodies(self) -> list[dict]:
        """The JSON bodies of the requests seen, in order."""
        with self._lock:
            return [json.loads(seen.body) for seen in self.seen if seen.body]

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        if self.mode == "refuse" and self._refuse(handler, headers, body):
            return
        if self.poison is not None and self._poisoned(handler, headers, body):
            return
        host, port = _address(self.upstream_url)
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        upstream.request(handler.command, handler.path, body=body or None, headers=headers)
        answer = upstream.getresponse()
        content = answer.read()
        upstream.close()
        with self._lock:
            spoiled = self.spoil > 0
            if spoiled:
                self.spoil -= 1
            answered = 503 if spoiled else answer.status
            self.seen.append(
                Seen(handler.command, handler.path, headers, body, answer.status, answered)
            )
        if spoiled and self.mode == "silence":
            time.sleep(self.silence_seconds)  # the client has given up by now
            handler.close_connection = True
            return
        if spoiled:
            content = json.dumps(
                {"error": {"code": "unavailable", "message": "Try again.", "details": {}}}
            ).encode()
            handler.send_response(503)
            handler.send_header("Retry-After", self.retry_after)
            handler.send_header("Content-Type", "application/json")
        else:
            if self.rewrite is not None and answer.status < 400:
                content = self.rewrite(content)
            handler.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding",
                                        "date", "server"):  # fmt: skip
                    handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def _poisoned(self, handler: BaseHTTPRequestHandler, headers: dict, body: bytes) -> bool:
        events = json.loads(body).get("events", []) if body else []
        if not any(event.get("event_id") == self.poison for event in events):
            return False
        with self._lock:
            self.seen.append(Seen(handler.command, handler.path, headers, body, 0, 500))
        content = json.dumps(
            {"error": {"code": "internal_error", "message": "Internal server error.",
                       "details": {}}}
        ).encode()  # fmt: skip
        handler.send_response(500)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)
        return True

    def _refuse(self, handler: BaseHTTPRequestHandler, headers: dict, body: bytes) -> bool:
        with self._lock:
            if self.spoil <= 0:
                return False
            self.spoil -= 1
            status = self.refuse_status
            self.seen.append(Seen(handler.command, handler.path, headers, body, 0, status))
        content = json.dumps(
            {"error": {"code": self.refuse_code, "message": "Refused.", "details": {}}}
        ).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)
        return True
