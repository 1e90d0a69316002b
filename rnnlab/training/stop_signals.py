"""Requests to stop at a step boundary: Ctrl-C (SIGINT), SIGTERM (`kill`, a scheduler's time limit)
and STUDY_STOP (a study telling its worker process to stop). Where their handlers are installed,
for a training run (`train.train_and_evaluate`) and for a study's workers (`sweep.run_points`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator, Sequence

from absl import logging

# A study's request to one of its worker processes (`sweep.run_points`): stop the point at its
# next step boundary and begin no other. Its own signal, so that it never adds up with a Ctrl-C
# or SIGTERM the worker received itself into the second one that aborts at once.
STUDY_STOP = signal.SIGUSR1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, STUDY_STOP)

_received: list[int] = []  # stop signals this process got between runs (`note`)


@contextlib.contextmanager
def handling(handler: Callable[[int, Any], None],
             signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
  """`handler(signum, frame)` for `signals` during the block, then the previous handlers.

  Only in the main thread (Python delivers signals to no other). A signal this process ignores
  stays ignored: a process started in the background ignores Ctrl-C, and a study's worker
  ignores it because its study stops it with STUDY_STOP.
  """
  previous = {}
  if threading.current_thread() is threading.main_thread():
    for signum in signals:
      if signal.getsignal(signum) is not signal.SIG_IGN:
        previous[signum] = signal.signal(signum, handler)
  try:
    yield
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
  """STOP_SIGNALS held back (pending, not lost) in this thread during the block, and in the
  processes it starts then: a study starts its workers so, and each unblocks them (`unblock`)
  once its handlers are set, so a Ctrl-C during their start-up cannot end them half-made."""
  if not hasattr(signal, "pthread_sigmask"):  # not POSIX
    yield
    return
  old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock() -> None:
  """Lets STOP_SIGNALS reach this thread again (see `blocked`); pending ones arrive now."""
  if hasattr(signal, "pthread_sigmask"):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class StopRequest:
  """The answer to stop signals, as a handler (`handling(request.handle)`): the first one asks to
  stop at a step boundary (`requested`) and is logged as "SIGNAL: `stopping` (press Ctrl-C again
  to abort at once)"; a second Ctrl-C or SIGTERM asks to abort at once (`aborted`). With
  `raise_on_abort`, the handler itself then raises KeyboardInterrupt, wherever the main thread
  is; without it, the caller polls `aborted` where an abort is safe. A request a study's worker
  got before this one was made (`received`) counts as the first."""

  def __init__(self, stopping: str, raise_on_abort: bool = False):
    self._stopping, self._raise_on_abort = stopping, raise_on_abort
    self._signum: int | None = None
    self.aborted = False

  @property
  def requested(self) -> bool:
    return self._signum is not None or received() is not None

  @property
  def exit_code(self) -> int:
    """128 + the first signal, as the shell reports a process it ended (130: Ctrl-C; 143:
    SIGTERM)."""
    return 128 + (self._signum or received() or signal.SIGINT)

  def handle(self, signum: int, frame: Any) -> None:
    if self.requested:
      if signum in (signal.SIGINT, signal.SIGTERM):
        self.aborted = True
        if self._raise_on_abort:
          raise KeyboardInterrupt
      return
    self._signum = signum
    logging.warning("%s: %s (press Ctrl-C again to abort at once).", name(signum),
                    self._stopping)


def note(signum: int, frame: Any) -> None:
  """The handler of a process between runs (a study's worker): keeps the request, so that a run
  begun after it stops at its first step boundary (`received`) and no further run begins."""
  _received.append(signum)


def received() -> int | None:
  """The first stop signal `note` kept in this process, or None."""
  return _received[0] if _received else None


def name(signum: int) -> str:
  """How a log line calls the signal: "Ctrl-C" for SIGINT, "its study" for STUDY_STOP, else its
  name ("SIGTERM")."""
  if signum == signal.SIGINT:
    return "Ctrl-C"
  return "its study" if signum == STUDY_STOP else signal.Signals(signum).name
