"""A loopback TCP relay that a test can cut: a network partition between one process and a
server (e.g. a controller replica and PostgreSQL).

:meth:`TcpRelay.cut` resets every relayed connection and refuses new ones (a firewall
REJECT; a silent drop is left to the kernel's TCP timeouts, which take minutes here);
:meth:`TcpRelay.heal` lets connections through again. Listens on 127.0.0.1 only; its thread
ends with :meth:`TcpRelay.close`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading

from federation.netaddr import free_port


class TcpRelay:
    """Relay ``127.0.0.1:<port>`` to ``target`` (``(host, port)``)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="tcp-relay", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`heal`."""
        self._cut.set()
        with self._lock:
            for sock in list(self._pairs):
                self._drop(sock)

    def heal(self) -> None:
        """Relay new connections again."""
        self._cut.clear()

    def close(self) -> None:
        """Stop relaying and close everything."""
        self._closed.set()
        self._thread.join(timeout=5)
        with self._lock:
            for sock in list(self._pairs):
                self._drop(sock)
        self._listener.close()
        self._sel.close()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # RST rather than FIN: a refused, not ended, link
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        if peer is not None:
            self._pairs.pop(peer, None)
            for s in (sock, peer):
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(s)
                self._reset(s)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._cut.is_set():
            self._reset(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=2)
        except OSError:
            self._reset(client)
            return
        for s in (client, server):
            s.settimeout(5)  # reads only when select says so; writes may wait for room
        self._pairs[client], self._pairs[server] = server, client
        self._sel.register(client, selectors.EVENT_READ)
        self._sel.register(server, selectors.EVENT_READ)

    def _run(self) -> None:
        while not self._closed.is_set():
            events = self._sel.select(timeout=0.1)
            with self._lock:
                for key, _ in events:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept()
                        continue
                    peer = self._pairs.get(sock)
                    if peer is None:
                        continue
                    try:
                        data = sock.recv(65536)
                        if data:
                            peer.sendall(data)  # loopback: small, fast
                            continue
                    except OSError:
                        pass
                    self._drop(sock)
