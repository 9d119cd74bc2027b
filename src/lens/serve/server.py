"""Running the app under uvicorn on a socket bound here, so `--port 0` works and the printed URL is
the one actually served; and a background-thread server for tests and the load bench."""

from __future__ import annotations

import socket
import threading

import uvicorn

from lens.errors import LensError


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def listen(host: str, port: int) -> socket.socket:
    """`bind`, or a LensError that says what to change."""
    try:
        return bind(host, port)
    except OSError as err:
        raise LensError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pick another --port"
        ) from None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class Server(uvicorn.Server):
    """uvicorn's server, remembering whether Ctrl-C / SIGTERM stopped it. uvicorn re-raises a captured
    signal after shutting down, but inside asyncio.run that only cancels the main task, which may
    already be finishing: the process then exits 0 or 130 by timing. `interrupted` is not a race."""

    interrupted = False

    def handle_exit(self, sig, frame) -> None:
        self.interrupted = True
        super().handle_exit(sig, frame)


def make_server(app, log_level: str = "warning") -> Server:
    # One event loop serves everything; the pipeline runs in the worker thread, never on the loop.
    return Server(uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5))


class ServerThread:
    """uvicorn in a daemon thread on 127.0.0.1 and a free port: `with ServerThread(app) as url: ...`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
