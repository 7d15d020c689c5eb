"""Progress of long work: a live bar on a terminal, one line per task off it, or nothing.

A :class:`Reporter` writes to a stream (standard error unless told otherwise), in
one of three modes, decided once:

* ``"bar"``: each task is a bar redrawn in place (at most ten times a second),
  ``label [#####-----]  45% 0:03<0:04  text``, fitted to the terminal's width; when
  the task ends its summary line replaces the bar, so the screen keeps one line
  per task (one per epoch when training);
* ``"lines"``: nothing while a task runs; its summary line when it ends. A log
  file of a training run gets exactly one line per epoch. A task asked for a
  ``heartbeat`` (a long evaluation) also writes a line at each tenth of its work
  reached at least :data:`HEARTBEAT` seconds after its last one;
* ``"quiet"``: nothing.

``"auto"`` (the default) is ``"bar"`` when the stream is a terminal, else ``"lines"``.

Nothing here imports torch; a task's text may be a callable, evaluated only when a
line is drawn, so that a running loss is read from the device ten times a second at
most rather than at every step.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

__all__ = ["HEARTBEAT", "MODES", "Reporter", "Task", "epoch_label", "epoch_line", "epoch_summary"]

#: the modes a :class:`Reporter` takes (``"auto"`` resolves to bar or lines)
MODES = ("auto", "bar", "lines", "quiet")
#: seconds between redraws of a bar
REDRAW = 0.1
#: least seconds between two heartbeat lines of a task off a terminal
HEARTBEAT = 10.0
#: the narrowest and widest bar drawn, in characters
MIN_BAR, MAX_BAR = 10, 30

Text = str | Callable[[], str] | None


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def duration(seconds: float) -> str:
    """Seconds as a summary line shows them: ``0.42 s``, ``12.3 s``, ``184 s``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


class Reporter:
    """Where long work reports its progress.

    :param mode: ``"auto"`` (bar on a terminal, lines otherwise), ``"bar"``, ``"lines"``
        or ``"quiet"``; ``True``/``False`` are ``"auto"``/``"quiet"``.
    :param file: the stream (default: ``sys.stderr`` when the reporter is made).
    :param prefix: put before every task's label (e.g. which run of a sweep).

    Example:

    >>> import io
    >>> from pyrovae.progress import Reporter
    >>> out = io.StringIO()  # not a terminal: one line per task
    >>> reporter = Reporter("auto", file=out)
    >>> reporter
    Reporter('lines', prefix='')
    >>> with reporter.task("epoch 1/2", total=3) as task:
    ...     for _ in range(3):
    ...         task.advance(1, text="loss 1.30")
    ...     task.done("loss 1.25")
    >>> print(out.getvalue(), end="")
    epoch 1/2  loss 1.25
    """

    def __init__(self, mode: str | bool = "auto", file: IO[str] | None = None, prefix: str = ""):
        if mode is True or mode is False:
            mode = "auto" if mode else "quiet"
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.file = file if file is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if _is_terminal(self.file) else "lines"
        self.mode = mode
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"Reporter({self.mode!r}, prefix={self.prefix!r})"

    @property
    def enabled(self) -> bool:
        """Whether anything is written at all."""
        return self.mode != "quiet"

    def with_prefix(self, prefix: str) -> Reporter:
        """The same reporter, with ``prefix`` before every label."""
        child = Reporter("quiet", self.file, self.prefix + prefix)
        child.mode = self.mode
        return child

    def task(
        self,
        label: str,
        total: int | None = None,
        *,
        heartbeat: bool = False,
        transient: bool = False,
    ) -> Task:
        """A task of ``total`` units (None: unknown); use it as a context manager.

        :param heartbeat: off a terminal, also write a line at each tenth of the work
            reached :data:`HEARTBEAT` seconds or more after the last line.
        :param transient: a status shown on a terminal while the task runs and erased
            when it ends (nothing off a terminal).
        """
        return Task(self, self.prefix + label, total, heartbeat, transient)

    def echo(self, text: str) -> None:
        """A line of its own (nothing when quiet)."""
        if self.enabled:
            self.write(text + "\n")

    def write(self, text: str) -> None:
        try:
            self.file.write(text)
            self.file.flush()
        except (OSError, ValueError):  # a closed pipe or stream: progress is not worth dying
            self.mode = "quiet"

    def width(self) -> int:
        """Columns a bar may take (the terminal's, less one so it never wraps)."""
        return max(20, shutil.get_terminal_size(fallback=(80, 24)).columns - 1)


class Task:
    """One piece of long work: advance it as units get done, end it with a summary line.

    ::

        with reporter.task("epoch 1/10", total=batches) as task:
            for batch in batches:
                ...
                task.advance(1, text=lambda: f"loss {running():.2f}")
            task.done(f"loss {loss:.2f}")  # leaves "epoch 1/10  loss 180.24"

    Leaving the block without :meth:`done` (an exception) ends a bar where it stands,
    and writes nothing in lines mode.
    """

    def __init__(
        self,
        reporter: Reporter,
        label: str,
        total: int | None = None,
        heartbeat: bool = False,
        transient: bool = False,
    ):
        self.reporter = reporter
        self.label = label
        self.total = total
        self.heartbeat = heartbeat
        self.transient = transient
        self.closed = False
        self.count = 0
        self.text: Text = None
        self.start = self.last_draw = self.last_beat = time.perf_counter()
        self._final: str | None = None
        self._drawn = 0  # characters of the bar on screen
        self._beats = 0  # tenths of the work reported by heartbeat lines

    def __enter__(self) -> Task:
        if self.reporter.mode == "bar":
            self._draw()
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True
        mode = self.reporter.mode
        if self.transient:
            if mode == "bar" and self._drawn:
                self._replace("")
                self.reporter.write("\r")
        elif mode == "bar":
            if self._final is not None:
                self._replace(self._final + "\n")
            elif self._drawn:
                self.reporter.write("\n")  # keep the bar where it stopped
        elif mode == "lines" and self._final is not None:
            self.reporter.write(self._final + "\n")

    @property
    def elapsed(self) -> float:
        """Seconds since the task began."""
        return time.perf_counter() - self.start

    def advance(self, n: int = 1, text: Text = None) -> None:
        """``n`` more units done; ``text`` (a string or a callable giving one) follows the bar."""
        self.count += n
        if text is not None:
            self.text = text
        mode = "closed" if self.closed else self.reporter.mode
        if mode == "bar":
            now = time.perf_counter()
            if now - self.last_draw >= REDRAW or self._complete():
                self._draw()
        elif mode == "lines" and self.heartbeat and self.total:
            self._beat()

    def note(self, text: Text) -> None:
        """Change the text after the bar (e.g. ``"evaluating"``) and redraw at once."""
        self.text = text
        if self.reporter.mode == "bar" and not self.closed:
            self._draw()

    def done(self, text: str) -> None:
        """End with the line ``label  text``, left when the task ends (bar and lines modes)."""
        self._final = f"{self.label}  {text}" if text else self.label

    # -- drawing ----------------------------------------------------------------
    def _complete(self) -> bool:
        return self.total is not None and self.count >= self.total

    def _text(self) -> str:
        text = self.text() if callable(self.text) else self.text
        return text or ""

    def _draw(self) -> None:
        self.last_draw = time.perf_counter()
        self._replace(self.render(self.reporter.width()))

    def _replace(self, line: str) -> None:
        """Overwrite the bar on screen with ``line`` (padded so no old character is left)."""
        body = line.rstrip("\n")
        pad = " " * max(0, self._drawn - len(body))
        self.reporter.write("\r" + body + pad + line[len(body) :])
        self._drawn = 0 if line.endswith("\n") else len(body)

    def render(self, width: int) -> str:
        """The bar as one line of at most ``width`` characters.

        The text after the bar is made of parts separated by ``" | "``, the most important
        first: on a narrow terminal the last parts give way, so that the bar stays at least
        :data:`MIN_BAR` wide; what still does not fit is cut.
        """
        parts = self._text().split(" | ")
        for keep in range(len(parts), 0, -1):
            line, bar_width = self._compose(" | ".join(parts[:keep]), width)
            if bar_width >= MIN_BAR or not self.total:
                break
        return line if len(line) <= width else line[: width - 1] + "…"

    def _compose(self, text: str, width: int) -> tuple[str, int]:
        """The line with ``text``, and the width its bar got (0: none)."""
        elapsed = self.elapsed
        bar_width = 0
        if self.total:
            fraction = min(self.count / self.total, 1.0)
            timing = clock(elapsed)
            if 0 < self.count < self.total:
                timing += "<" + clock(elapsed / self.count * (self.total - self.count))
            info = f"{fraction:4.0%} {timing}"
            room = width - len(self.label) - len(info) - (len(text) + 2 if text else 0) - 4
            bar_width = min(MAX_BAR, room)
            if bar_width >= MIN_BAR:
                filled = int(fraction * bar_width)
                info = "[" + "#" * filled + "-" * (bar_width - filled) + "] " + info
            line = f"{self.label} {info}"
        elif self.count:
            line = f"{self.label}  {clock(elapsed)}"
        else:
            line = self.label
        if text:
            line += "  " + text
        return line, bar_width

    def _beat(self) -> None:
        tenths = int(10 * self.count / self.total)
        now = time.perf_counter()
        if tenths > self._beats and tenths < 10 and now - self.last_beat >= HEARTBEAT:
            self._beats = tenths
            self.last_beat = now
            text = self._text()
            self.reporter.write(
                f"{self.label}: {self.count}/{self.total} ({tenths}0%), {clock(self.elapsed)}"
                + (f"  {text}" if text else "")
                + "\n"
            )


# ---------------------------------------------------------------------- training epochs


def _loss(row: Mapping[str, Any]) -> tuple[str, float | None]:
    """The epoch's training loss per point: −ELBO, or D + βR when β ≠ 1 in the epoch."""
    if "train_beta_elbo" in row:
        return f"loss (β {row.get('beta', float('nan')):g})", -row["train_beta_elbo"]
    if "train_elbo" in row:
        return "loss", -row["train_elbo"]
    return "loss", None


#: what an epoch's line shows of the test numbers: key, name, width
_TEST_COLUMNS = (("test_elbo", "test ELBO", 7), ("test_rate", "R", 6), ("test_distortion", "D", 7))


def epoch_text(row: Mapping[str, Any], compact: bool = False) -> str:
    """``test ELBO  -70.32  R  12.50  D   57.82  0.41 s/epoch`` of a metrics row (what is
    in it), in columns; ``compact``: ``test ELBO -70.32 R 12.50 D 57.82 | 0.41 s/epoch``."""
    parts = []
    for key, name, width in _TEST_COLUMNS:
        if row.get(key) is not None:
            parts.append(f"{name} {row[key]:.2f}" if compact else f"{name} {row[key]:{width}.2f}")
    text = " ".join(parts) if compact else "  ".join(parts)
    if "seconds" in row:
        seconds = f"{duration(row['seconds'] + row.get('eval_seconds', 0.0))}/epoch"
        text = f"{text} | {seconds}" if compact else f"{text}  {seconds}"
    return text.removeprefix(" | ").strip()


def epoch_label(epoch: int, epochs: int) -> str:
    """``epoch  3/10``: the epoch number (1-based) padded to the width of the last."""
    return f"epoch {epoch:>{len(str(epochs))}}/{epochs}"


def epoch_summary(row: Mapping[str, Any]) -> str:
    """``loss 180.24  test ELBO −175.10  R 22.31  D 152.79  1.92 s/epoch`` of a metrics row
    (loss per data point: −ELBO, or D + βR when β ≠ 1 in the epoch)."""
    name, loss = _loss(row)
    parts = [] if loss is None else [f"{name} {loss:7.2f}"]
    text = epoch_text(row)
    return "  ".join([*parts, text] if text else parts)


def epoch_line(row: Mapping[str, Any], epochs: int) -> str:
    """The line an epoch leaves: ``epoch  3/10  loss 180.24  test ELBO −175.10  ...``."""
    return f"{epoch_label(row['epoch'], epochs)}  {epoch_summary(row)}"
