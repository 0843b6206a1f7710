"""Where the sweep's and its libraries' log lines go: every INFO line into `<output_dir>/sweep.log`, and
to the terminal only warnings and errors, unless `--verbose`.

Ray, MLflow (and alembic under it) log through handlers of their own that write to stderr and do not
propagate to the root logger, installed when they are imported (Ray's "Started a local Ray instance",
MLflow's "Creating initial MLflow database tables", Tune's "Wrote the latest version of all result
files"). `LogSession.route()` therefore runs again after each of those imports: it puts a filter on
their terminal handlers (what is below WARNING stays off the terminal) and the log file's handler on
their loggers. Leaving the session takes everything back off, so a notebook or a test session that runs
several sweeps keeps its own logging as it was.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

LOG_FILE = "sweep.log"
#: loggers that write to the terminal themselves (propagate=False) and chatter at INFO
LIBRARY_LOGGERS = ("ray", "mlflow", "alembic", "huey")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


#: libraries whose errors and tracebacks go to the log file only (Tune's trial error reports, MLflow's
#: SQLAlchemy errors with their SQL dumps): the terminal says one line per failed cell and per stopping
#: reason itself, and --verbose shows the rest. Their plain warnings stay on the terminal.
QUIET_LIBRARIES = (*LIBRARY_LOGGERS, "sqlalchemy", "urllib3", "filelock", "fsspec", "pyarrow")


def is_library_record(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] in QUIET_LIBRARIES


class _BelowWarning(logging.Filter):
    """Keeps INFO and DEBUG records, and a library's errors and tracebacks, off a terminal handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        if is_library_record(record):
            return record.levelno < logging.ERROR and not record.exc_info
        return True


def brief(err: BaseException, limit: int = 200) -> str:
    """One line for the terminal from a library's exception: its type and first line, without the SQL
    statement and parameters SQLAlchemy appends (MLflow's errors on a full disk run to hundreds of lines);
    the whole of it belongs in the log file."""
    text = str(err).split("[SQL:", 1)[0].strip()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _LogFile(logging.FileHandler):
    """The log file. A write that fails (a disk that filled: the sweep reports that itself) ends the
    file's writing, instead of a `--- Logging error ---` traceback on the terminal for every line."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            super().close()


class _ToFile(logging.Handler):
    """Hands a library logger's records to the log file's handler. Its own: Ray's `ray.init` sets its
    format on every handler of the "ray" logger, which would otherwise become the whole file's."""

    def __init__(self, target: logging.Handler):
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


class LogSession:
    """One sweep invocation's logging: `with LogSession(out, verbose) as logs: ...; logs.route()` after
    importing ray or mlflow."""

    def __init__(self, output_dir: Path, verbose: bool = False):
        self.path = Path(output_dir) / LOG_FILE
        self.verbose = verbose
        self._file: _LogFile | None = None
        self._quiet = _BelowWarning()
        self._filtered: list[logging.Handler] = []
        self._attached: list[tuple[logging.Logger, logging.Handler]] = []
        self._levels: dict[str, int] = {}

    def __enter__(self) -> LogSession:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _LogFile(self.path, encoding="utf-8")
        self._file.setLevel(logging.INFO)
        self._file.setFormatter(logging.Formatter(LOG_FORMAT))
        # the sweep's own INFO lines reach the root logger (and the file) whatever the root level is
        self._attach(logging.getLogger())
        sweep = logging.getLogger("sweep")
        if sweep.level == logging.NOTSET or sweep.level > logging.INFO:
            self._levels["sweep"] = sweep.level
            sweep.setLevel(logging.INFO)
        if logging.getLogger().level > logging.INFO:
            # root's INFO would otherwise be dropped before the file sees it; its terminal handlers get
            # the filter instead, so the terminal shows what it showed before
            self._levels[""] = logging.getLogger().level
            logging.getLogger().setLevel(logging.INFO)
            for handler in logging.getLogger().handlers:
                if handler is not self._file and not self.verbose:
                    self._filter(handler)
        self.route()
        global _current
        _current = self
        return self

    def route(self) -> None:
        """The library loggers that exist now: their INFO into the file, off the terminal."""
        for name in LIBRARY_LOGGERS:
            if name not in logging.Logger.manager.loggerDict:
                continue  # not imported (yet): nothing of it to route
            logger = logging.getLogger(name)
            if not logger.propagate:  # a logger that propagates reaches the file through root
                self._attach(logger, library=True)
            if not self.verbose:
                for handler in logger.handlers:
                    if not isinstance(handler, _ToFile):
                        self._filter(handler)

    def _attach(self, logger: logging.Logger, library: bool = False) -> None:
        if self._file is None or any(lg is logger for lg, _ in self._attached):
            return
        handler = _ToFile(self._file) if library else self._file
        logger.addHandler(handler)
        self._attached.append((logger, handler))

    def _filter(self, handler: logging.Handler) -> None:
        if self._quiet not in handler.filters:
            handler.addFilter(self._quiet)
            self._filtered.append(handler)

    def __exit__(self, *exc: object) -> None:
        global _current
        if _current is self:
            _current = None
        for logger, handler in self._attached:
            logger.removeHandler(handler)
        for handler in self._filtered:
            handler.removeFilter(self._quiet)
        for name, level in self._levels.items():
            logging.getLogger(name or None).setLevel(level)
        if self._file is not None:
            self._file.close()
        self._attached.clear()
        self._filtered.clear()
        self._levels.clear()


_current: LogSession | None = None


def route_library_logs() -> None:
    """Call after importing a library of LIBRARY_LOGGERS: routes its loggers into the current sweep's log
    file (no-op outside a sweep)."""
    if _current is not None:
        _current.route()
