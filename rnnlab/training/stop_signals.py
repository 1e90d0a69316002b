"""Ctrl-C (SIGINT) and SIGTERM as requests to stop at a step boundary: where their handlers are
installed, for a training run (`train.train_and_evaluate`) and for a study's worker processes
(`sweep.run_points`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def handling(handler: Callable[[int, Any], None]) -> Iterator[None]:
  """`handler(signum, frame)` for SIGINT and SIGTERM during the block, then the previous handlers.

  Only in the main thread (Python delivers signals to no other). A signal this process ignores
  stays ignored: a process started in the background ignores Ctrl-C, and a study's worker
  ignores it because its study stops it with SIGTERM.
  """
  previous = {}
  if threading.current_thread() is threading.main_thread():
    for signum in (signal.SIGINT, signal.SIGTERM):
      if signal.getsignal(signum) is not signal.SIG_IGN:
        previous[signum] = signal.signal(signum, handler)
  try:
    yield
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)


def name(signum: int) -> str:
  """How a log line calls the signal: "Ctrl-C" for SIGINT, else its name ("SIGTERM")."""
  return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
