"""A writer process: a recorder's transactions run in a child process, in order.

A backtest spends a large share of each bar binding rows for the database driver
(about 4 µs a row with SQLite, ten rows a bar). :class:`WriterProcess` moves that work
to a second process, so it runs on another core while the run goes on:

* The parent encodes each flush (the SQL of each table and its rows) with msgpack, and
  a sender thread writes it to the child's stdin as one length-prefixed frame, so the
  run does not wait on a full pipe; encoding costs about 0.4 µs a row. Messages whose
  rows are their fields go as they are (a message struct encodes as an array: its tag,
  then its fields) and the child drops the tag.
* The child runs each flush in one transaction, in the order sent, and answers on its
  stdout with the flush number and the rows written, or the error. A flush whose
  connection the server closes in the middle is written again on a new one, unless the
  run's heartbeat shows it committed (:func:`storage.db.write_rows`). After an error it
  writes nothing more (a later flush without the failed one would leave a hole) and
  answers every later flush with that error.
* :meth:`WriterProcess.wait` blocks until every flush sent so far is answered and
  raises :class:`~engine.core.errors.StorageError` naming the first failure. A recorder in
  this mode waits before the run is marked completed or failed, so a run's status is
  only set once its rows are committed.

The child is started with ``python -m storage.writer`` (not ``multiprocessing``), so
the parent's main module is never imported again. If the child dies, the parent's next
call raises an error that says so; if the parent dies, the child commits the flushes it
received whole and exits.
"""

from __future__ import annotations

import contextlib
import os
import queue
import struct

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from engine.core.errors import StorageError
from storage.db import connect, write_rows

__all__ = ["MAX_IN_FLIGHT", "WriterProcess"]

_HEADER = struct.Struct("<Q")
#: flushes sent but not yet committed before :meth:`WriterProcess.submit` waits
MAX_IN_FLIGHT = 16
_ROOT = Path(__file__).resolve().parent.parent


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


def _widen_pipe(stream: IO[bytes]) -> None:
    """Give the pipe a 1 MiB buffer where Linux allows it (a flush of 1,000 bars is about
    0.8 MB), so sending a flush rarely waits for the child to read it."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031) if fcntl is not None else None
    if set_size is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(stream.fileno(), set_size, 1 << 20)


class WriterProcess:
    """Runs flushes in a child process; see the module docstring."""

    def __init__(self, url: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_ROOT), *filter(None, [env.get("PYTHONPATH", "")])]
        )
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "storage.writer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=os.getcwd(),
            )
        except OSError as exc:
            raise StorageError(f"cannot start the writer process: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        _widen_pipe(self._stdin)
        self._encoder = msgspec.msgpack.Encoder()
        self._sent = 0
        self._answered = 0
        self.rows_written = 0
        self._error: str | None = None
        self._lock = threading.Condition()
        self._reader = threading.Thread(
            target=self._read_answers, args=(self._proc.stdout,), daemon=True
        )
        self._reader.start()
        # frames go to the child from a sender thread, in order: a flush larger than the
        # pipe's buffer then never holds the run back while the child is busy committing
        # (the write waits outside the GIL)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_frames, daemon=True)
        self._sender.start()
        self._outbox.put(url.encode())

    def _send_frames(self) -> None:
        broken = False
        while True:
            payload = self._outbox.get()
            if payload is None:
                with contextlib.suppress(OSError, ValueError):
                    self._stdin.close()
                return
            if broken:
                continue  # the child is gone: what is left is answered by the error
            try:
                _write_frame(self._stdin, payload)
            except (OSError, ValueError):
                broken = True
                with self._lock:
                    if self._error is None:
                        self._error = self._exit_message()
                    self._lock.notify_all()

    def _exit_message(self) -> str:
        return f"the writer process exited (code {self._proc.poll()}) before writing every row"

    def _read_answers(self, stream: IO[bytes]) -> None:
        decoder = msgspec.msgpack.Decoder()
        while True:
            payload = _read_frame(stream)
            with self._lock:
                if payload is None:
                    if self._answered < self._sent and self._error is None:
                        self._error = self._exit_message()
                    self._answered = max(self._answered, self._sent)
                    self._lock.notify_all()
                    return
                _flush_id, count, error = decoder.decode(payload)
                self._answered += 1
                if error is not None and self._error is None:
                    self._error = error
                elif error is None:
                    self.rows_written += count
                self._lock.notify_all()

    def check(self) -> None:
        """Raise the first error the child reported, if any."""
        with self._lock:
            if self._error is not None:
                raise StorageError(self._error)

    def submit(
        self, what: str, tables: Sequence[tuple[str, bool, list[Any]]], check: tuple[str, int]
    ) -> None:
        """Send one flush: ``what`` it belongs to (its errors start with it), (sql, rows are
        message structs, rows) per table, and ``check``: a query and the value it reads
        once the flush is committed (if the server closes the connection in the middle,
        the child asks it before writing the flush again:
        :func:`storage.db.write_rows`).

        Waits while ``MAX_IN_FLIGHT`` flushes are unanswered, so a database slower than
        the run holds back the run instead of piling flushes up in memory.
        """
        with self._lock:
            while self._sent - self._answered >= MAX_IN_FLIGHT and self._error is None:
                self._wait_answer()
        self.check()
        self._sent += 1
        self._outbox.put(self._encoder.encode((self._sent, what, tables, *check)))

    def wait(self) -> None:
        """Block until every flush sent is answered; raise the first error."""
        with self._lock:
            while self._answered < self._sent and self._error is None:
                self._wait_answer()
        self.check()

    def _wait_answer(self) -> None:
        # called with the lock held; the answers' reader ends only when the child's
        # stdout closes, and then nothing more can be answered
        self._lock.wait(timeout=1.0)
        if not self._reader.is_alive() and self._answered < self._sent and self._error is None:
            self._error = self._exit_message()

    def close(self) -> None:
        """Wait for the flushes sent, then stop the child (always stops it)."""
        try:
            self.wait()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the child: it commits the flushes it has received whole, then exits."""
        self._outbox.put(None)  # the sender closes the child's stdin after the last frame
        self._sender.join(timeout=60)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:

    frames: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        # drain stdin at once, so the parent never waits for a transaction to finish
        while True:
            payload = _read_frame(stdin)
            frames.put(payload)
            if payload is None:
                return

    threading.Thread(target=read, daemon=True).start()
    first = frames.get()
    if first is None:
        return
    error: str | None = None
    engine = None
    try:
        engine = connect(first.decode(), create=False)
    except Exception as exc:  # answered to every flush, so the parent raises it
        error = str(exc) if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
    # rows as tuples: what the drivers' executemany takes
    decoder = msgspec.msgpack.Decoder(
        tuple[int, str, list[tuple[str, bool, list[tuple[Any, ...]]]], str, int]
    )
    encoder = msgspec.msgpack.Encoder()
    while True:
        payload = frames.get()
        if payload is None:
            break
        flush_id, what, tables, check_sql, check_value = decoder.decode(payload)
        count = 0
        if error is None and engine is not None:
            try:
                batch = []
                for sql, structs, rows in tables:
                    if structs:
                        rows = [row[1:] for row in rows]  # drop the message's tag
                    batch.append((sql, rows))
                    if sql.startswith("INSERT"):  # not the run row's heartbeat
                        count += len(rows)
                what = f"{what}: writing {count} rows"
                write_rows(engine, what, batch, (check_sql, check_value))
            except Exception as exc:  # reported to the parent, which raises it
                error = (
                    str(exc) if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
                )
        _write_frame(stdout, encoder.encode((flush_id, count, error)))
    if engine is not None:
        engine.dispose()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
