"""A run session: a stored run's row, its recorder and how the run ends.

Backtests and paper runs both store through a :class:`RunSession`: the row is created
after the kernel is built (so a run that cannot be built leaves no row behind), the
recorder is the kernel's first component (:meth:`engine.app.kernel.Kernel.start`), and
the run ends ``completed`` with its summary (:func:`engine.app.outcome.summarize`),
``failed`` with its error, or, for a paper run that may go on, ``stopped`` or ``halted``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Engine

from engine.app.outcome import provenance, run_row
from engine.app.provenance import TrainingRecord
from engine.app.scenario import ScenarioConfig
from engine.core.bus import MessageBus
from engine.core.errors import StorageError
from engine.feeds.bars import BarData
from engine.feeds.universe import Universe
from storage.models import RunStatus
from storage.paper import set_run_status
from storage.recorder import Recorder
from storage.runs import create_run, delete_run, finish_run
from storage.writer import WriterProcess

log = logging.getLogger("emarl.session")

__all__ = ["RunSession"]


class RunSession:
    """A stored run: its row, its recorder and how it ends.

    :meth:`create` stores a new row (after the kernel is built, so that a run that cannot
    be built leaves no row behind); :meth:`attach` takes a row that exists (a paper run
    resumed, or created with its feed state). The recorder is the kernel's first
    component (:meth:`engine.app.kernel.Kernel.start`). With a
    :class:`~storage.writer.WriterProcess` the rows are written on another core and the
    run's status is set only after every row is committed (:meth:`close` stops it).
    """

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        bus: MessageBus,
        *,
        flush_every_bars: int,
        writer: WriterProcess | None = None,
        started: float | None = None,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.bus = bus
        self.writer = writer
        #: ``time.perf_counter()`` when the run began (its wall time counts from there)
        self.started = time.perf_counter() if started is None else started
        self.recorder: Recorder = Recorder(
            engine, run_id, bus, flush_every_bars=flush_every_bars, writer=writer
        )

    @classmethod
    def create(
        cls,
        engine: Engine,
        config: ScenarioConfig,
        bus: MessageBus,
        *,
        kind: str,
        scenario_path: str,
        name: str | None = None,
        data: BarData | Universe | None = None,
        record: TrainingRecord | None = None,
        flush_every_bars: int | None = None,
        writer_process: bool = False,
        started: float | None = None,
        strategy: dict[str, Any] | None = None,
    ) -> RunSession:
        """Store a new ``running`` row for ``config`` (with its bars' figures and
        fingerprint when they are known) and its recorder on ``bus``; ``strategy`` is
        what ran instead of the scenario's strategy (:func:`engine.app.outcome.run_row`)."""
        columns = run_row(
            config,
            kind=kind,
            scenario_path=scenario_path,
            name=name,
            data=data,
            origin=provenance(data, record),
            strategy=strategy,
        )
        run_id = create_run(engine, **columns)
        writer = None
        if writer_process:
            writer = WriterProcess(engine.url.render_as_string(hide_password=False))
        every = config.storage.flush_every_bars if flush_every_bars is None else flush_every_bars
        return cls(engine, run_id, bus, flush_every_bars=every, writer=writer, started=started)

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started

    def complete(
        self, summary: dict[str, Any] | None, wall_seconds: float | None = None, **values: Any
    ) -> None:
        """Mark the run ``completed`` with its summary (every row is stored), then refresh
        the statistics of its tables (:meth:`~storage.recorder.Recorder.refresh_statistics`;
        a failure there is logged, not raised: the run is stored whole)."""
        finish_run(
            self.engine,
            self.run_id,
            status=RunStatus.COMPLETED,
            wall_seconds=self.wall_seconds if wall_seconds is None else wall_seconds,
            summary=summary,
            **values,
        )
        self._refresh_statistics()

    def discard(self) -> None:
        """Delete the run row, for a run that never began: nothing of it is stored."""
        self.recorder.discard()
        delete_run(self.engine, self.run_id)

    def _refresh_statistics(self) -> None:
        try:
            self.recorder.refresh_statistics()
        except StorageError as exc:
            log.warning(
                "warning: %s; reading run %d may be slow until the tables are analyzed",
                exc,
                self.run_id,
            )

    def fail(self, exc: BaseException, **values: Any) -> None:
        """Store what the recorder holds, then mark the run ``failed`` with the error.

        A storage error on the way (the database may be what failed) is logged, not
        raised, so that the caller goes on to raise ``exc``, the run's own error; a run
        that could not be marked stays ``running`` until its process has ended, and then
        readers judge it ``interrupted``."""
        try:
            self.recorder.abort()
        except StorageError as stored:
            log.warning("warning: run %d: its last rows were not stored: %s", self.run_id, stored)
        try:
            finish_run(
                self.engine,
                self.run_id,
                status=RunStatus.FAILED,
                wall_seconds=self.wall_seconds,
                error=str(exc) or type(exc).__name__,
                **values,
            )
        except StorageError as marked:
            log.warning(
                "warning: run %d could not be marked failed (%s); readers will show it "
                "interrupted once this process has ended",
                self.run_id,
                marked,
            )

    def set_status(self, status: RunStatus, *, error: str | None = None, **values: Any) -> None:
        """Set a paper run's status: ``running`` (with the process's identity), or
        ``stopped`` or ``halted``, after which it may go on (and the statistics of its
        tables are refreshed, as when a run completes)."""
        set_run_status(self.engine, self.run_id, status, error=error, **values)
        if status != RunStatus.RUNNING:
            self._refresh_statistics()

    def close(self) -> None:
        """Stop the writer process (if any) once every row is committed."""
        if self.writer is not None:
            self.writer.stop()
