"""A small TCP proxy on 127.0.0.1 that tests put between a client and a real server, to count
the client's own connections (the server's counters are server-wide, and the server may be
shared) and to cut or stall the link at a chosen point."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`. Faults act on the server-to-client direction:

    - `cut_after_bytes(n, times)`: the next `times` connections that get n bytes to the
      client are reset there (a dropped link mid-read; idle connections are not counted);
    - `stall_after_bytes(n)`: every connection stops forwarding after n bytes, the
      sockets staying open (a stalled network), until `resume()`.

    `sent` holds, per connection, the bytes the client sent (to read the requests it made).
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0  # opened through the proxy so far
        self.open_now = 0
        self.most_at_once = 0
        self.sent: list[bytearray] = []
        self._cut_at: int | None = None
        self._cuts_left = 0
        self._stall_at: int | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._stopped = threading.Event()
        self._stalled = threading.Event()
        self._resumed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after_bytes(self, count: int, times: int = 1) -> None:
        with self._lock:
            self._cut_at, self._cuts_left = count, times

    def stall_after_bytes(self, count: int | None) -> None:
        self._stall_at = count
        self._resumed.clear()

    def resume(self) -> None:
        """Stalled links forward again, from where they stopped."""
        self._stall_at = None
        self._resumed.set()

    def wait_until_stalled(self, timeout: float = 30) -> bool:
        return self._stalled.wait(timeout)

    def close(self) -> None:
        """Ends every link, so the server sees its sessions end (and frees their locks)."""
        self._closed = True
        self._stopped.set()
        self._resumed.set()
        with self._lock:
            for sock in [self.listener, *self._sockets]:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
                except OSError:
                    pass
                sock.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
                self.open_now += 1
                self.most_at_once = max(self.most_at_once, self.open_now)
                self._sockets += [client, server]
                sent = bytearray()
                self.sent.append(sent)
            upstream = threading.Thread(target=self._pipe, args=(client, server, False, sent))
            downstream = threading.Thread(target=self._pipe, args=(server, client, True))
            for thread in (upstream, downstream):
                thread.daemon = True
                thread.start()

    def _take_cut(self) -> bool:
        with self._lock:
            if self._cuts_left <= 0:
                return False
            self._cuts_left -= 1
            return True

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        downstream: bool,
        record: bytearray | None = None,
    ) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if record is not None:
                    record += data
                limit = self._stall_at if downstream else None
                cut = self._cut_at
                if downstream and cut is not None and sent + len(data) >= cut and self._take_cut():
                    sink.sendall(data[: max(0, cut - sent)])
                    # the link ends mid-answer, as a killed server connection ends it;
                    # shutdown, not close alone: it wakes the other thread's blocked recv
                    for sock in (sink, source):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: max(0, limit - sent)])
                    self._stalled.set()
                    self._resumed.wait()  # hold both sockets open, forward nothing more
                    if self._stopped.is_set():
                        return
                    data = data[max(0, limit - sent) :]
                    sent = limit
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            if downstream:
                with self._lock:
                    self.open_now -= 1
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def proxied_url(url: str, proxy: TcpProxy) -> str:
    """`url` (mysql://user[:password]@host:port/db) with the proxy as host and port."""
    head, _, tail = url.rpartition("@")
    database = tail.split("/", 1)[1]
    return f"{head}@127.0.0.1:{proxy.port}/{database}"
