"""Count the SQL statements a server sends to PostgreSQL, on the wire.

A TCP proxy between an app and PostgreSQL that reads the frontend side of
the protocol (unencrypted: connect with `sslmode=disable`) and records
every statement the server is asked to run: each simple `Query` message
(which is how psycopg sends BEGIN, COMMIT and SAVEPOINT, and how Django's
health check `SELECT 1` travels) and each `Execute` of the extended
protocol (every parametrised or prepared statement). Nothing that the app
sends escapes it, transaction control included, and it needs neither
pg_stat_statements nor logging on the server.
"""

import asyncio
import contextlib
import socket
import struct
import threading

# Requests that come before the startup message and carry no type byte.
_PRE_STARTUP_CODES = {80877103, 80877104}  # SSLRequest, GSSENCRequest


class StatementCounter:
    """A proxy on 127.0.0.1:`port` to PostgreSQL on `upstream`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = _free_port()
        self._statements: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> "StatementCounter":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("statement counter did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def take(self) -> list[str]:
        """The statements recorded since the last call, oldest first."""
        with self._lock:
            statements, self._statements = self._statements, []
        return statements

    def _record(self, statement: str) -> None:
        with self._lock:
            self._statements.append(" ".join(statement.split()))

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(
            self._frontend(reader, upstream_writer),
            _pipe(upstream_reader, writer),
            return_exceptions=True,
        )
        for stream in (writer, upstream_writer):
            stream.close()

    async def _frontend(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Forward the app's messages, recording the statements among them."""
        try:
            code = None
            while code is None or code in _PRE_STARTUP_CODES:
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                writer.write(head + await reader.readexactly(length - 8))
                await writer.drain()
            prepared: dict[bytes, str] = {}
            bound = ""
            while True:
                head = await reader.readexactly(5)
                kind = head[:1]
                body = await reader.readexactly(struct.unpack("!i", head[1:])[0] - 4)
                writer.write(head + body)
                if kind == b"Q":  # Query: text
                    self._record(body[:-1].decode(errors="replace"))
                elif kind == b"P":  # Parse: name, text, parameter types
                    name, text = body.split(b"\0", 2)[:2]
                    prepared[name] = text.decode(errors="replace")
                elif kind == b"B":  # Bind: portal, statement name, ...
                    bound = prepared.get(body.split(b"\0", 2)[1], "?")
                elif kind == b"E":  # Execute: runs what was bound
                    self._record(bound)
                elif kind == b"X":  # Terminate
                    await writer.drain()
                    return
                if kind in (b"Q", b"S", b"H"):  # the server answers now
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        return
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
