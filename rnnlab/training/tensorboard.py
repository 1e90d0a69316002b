"""TensorBoard event files for a run: the scalars of `metrics.jsonl`, for `tensorboard --logdir`.

metrics.jsonl stays the record of a run; the event files are a second view of the same rows,
written by `tensorboard`'s own event-file writer (no TensorFlow needed). Layout under a workdir:

  tensorboard/             every numeric value of every row, tag = its metrics.jsonl key
                           (loss, accuracy, grad_norm, learning_rate, steps_per_sec, eval_loss, ...;
                           a nested dict value {"a": {"b": x}} becomes tag "a/b")
  tensorboard/seed_{s}/    with train.num_seeds > 1: seed s's values from the rows' "per_seed"
                           (tags as above) and "eval_per_seed" (tags "eval_<metric>")

Seeds use the same tags in separate run directories, so TensorBoard draws every seed and the mean
in one chart per metric. `tensorboard --logdir=WORKDIR` shows one run; `--logdir=SWEEPDIR`, whose
points are workdirs, shows all of them side by side, named by their directories
("<point>/tensorboard", "<point>/tensorboard/seed_1", ...).

Values are stored as `simple_value` (float32), the classic scalar form every TensorBoard reader
understands (`EventAccumulator.Scalars`, TensorBoard's data server).

Resume. A run killed after its last checkpoint has logged steps that the resumed run logs again.
`truncate(workdir, step)` (called with metrics.jsonl's truncation, before the new session writes)
rewrites every event file keeping only the events of steps <= `step`, with their original wall
times, so the files on disk hold each step once, exactly like metrics.jsonl, for any reader. The
new session then writes to a new event file (named by its creation time, so it sorts after the
earlier ones) that starts with a SessionLog START at `step + 1`, TensorBoard's restart marker: a
reader that was already running and had loaded the stale steps purges them on seeing it
(`EventAccumulator` does), so a live view does not keep the duplicates either.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import threading
import time
from typing import Any, Iterator

from absl import logging

from rnnlab.training import run_files

TENSORBOARD_DIR = run_files.TENSORBOARD_DIR
_SEED_DIR = "seed_{}"
_EVENT_GLOB = "events.out.tfevents.*"


def logdir(workdir: str) -> str:
  """The directory holding `workdir`'s event files (the run's mean values)."""
  return os.path.join(workdir, TENSORBOARD_DIR)


def _flatten(value: Any, tag: str) -> Iterator[tuple[str, float]]:
  """(tag, number) pairs of a row value: numbers as they are, dicts flattened with "/"; other
  values (strings, lists, None) are not scalars and are skipped."""
  if isinstance(value, bool):
    return
  if isinstance(value, (int, float)):
    yield tag, float(value)
  elif isinstance(value, dict):
    for key, sub in value.items():
      yield from _flatten(sub, f"{tag}/{key}")


def row_scalars(row: dict[str, Any]) -> dict[str, dict[str, float]]:
  """One metrics.jsonl row -> {run subdirectory ("" or "seed_{s}"): {tag: value}}.

  Keys "per_seed" and "<prefix>per_seed" (e.g. "eval_per_seed") hold {metric: [value per seed]};
  seed s's values go to "seed_{s}" under tags "<prefix><metric>". "step" is the x axis, not a tag.
  """
  out: dict[str, dict[str, float]] = {}
  for key, value in row.items():
    if key == "step":
      continue
    if key.endswith("per_seed") and isinstance(value, dict):
      prefix = key[:-len("per_seed")]
      for metric, per_seed in value.items():
        if not isinstance(per_seed, list):
          continue
        for s, v in enumerate(per_seed):
          for tag, x in _flatten(v, prefix + metric):
            out.setdefault(_SEED_DIR.format(s), {})[tag] = x
    else:
      for tag, x in _flatten(value, key):
        out.setdefault("", {})[tag] = x
  return out


def _event_files(workdir: str) -> list[str]:
  """Every event file under workdir/tensorboard/ (all run subdirectories), sorted."""
  root = logdir(workdir)
  return sorted(glob.glob(os.path.join(root, _EVENT_GLOB))
                + glob.glob(os.path.join(root, "*", _EVENT_GLOB)))


class Writer:
  """Writes metric rows of one run as TensorBoard scalars.

  Event files are opened on the first row that needs them (one per run subdirectory), so a
  `truncate` before the first write never sees a file of this session.
  """

  def __init__(self, workdir: str, restart_step: int | None = None):
    self.workdir = workdir
    self.restart_step = restart_step
    self._writers: dict[str, Any] = {}
    self._unavailable = False

  def _writer(self, run: str) -> Any:
    if run not in self._writers:
      _quiet_writer_threads()
      from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
      from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
      writer = event_file_writer.EventFileWriter(os.path.join(logdir(self.workdir), run))
      if self.restart_step is not None:
        writer.add_event(event_pb2.Event(
            wall_time=time.time(), step=self.restart_step,
            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
      self._writers[run] = writer
    return self._writers[run]

  def write(self, row: dict[str, Any]) -> None:
    """Adds every scalar of `row` ({"step": int, name: value, ...}) at step row["step"]."""
    if self._unavailable:
      return
    try:
      from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    except ImportError:
      self._unavailable = True
      logging.warning("tensorboard is not installed: this run writes metrics.jsonl only "
                      "(pip install tensorboard for TensorBoard event files)")
      return
    now = time.time()
    for run, scalars in row_scalars(row).items():
      values = [summary_pb2.Summary.Value(tag=tag, simple_value=x) for tag, x in scalars.items()]
      with self._failing(run):
        writer = self._writer(run)
        writer.add_event(event_pb2.Event(wall_time=now, step=int(row["step"]),
                                         summary=summary_pb2.Summary(value=values)))
        # The writer's thread writes; its error (e.g. a full disk) surfaces here, at the flush.
        writer.flush()

  def close(self) -> None:
    writers, self._writers = self._writers, {}
    for run, writer in writers.items():
      with self._failing(run):
        writer.close()

  @contextlib.contextmanager
  def _failing(self, run: str) -> Iterator[None]:
    """Turns a failed write of `run`'s event file into an error naming its directory. After one,
    the writers are dropped unclosed: closing flushes again and would raise the same error over
    the first one (e.g. in the training loop's `finally`)."""
    try:
      yield
    except OSError as e:
      self._writers = {}
      path = os.path.join(logdir(self.workdir), run) if run else logdir(self.workdir)
      raise run_files.write_error(path, e) from None


def _quiet_writer_threads() -> None:
  """Keeps the traceback of an event writer's thread that failed to write (a full disk) off
  stderr: the failure is re-raised in the training loop at the next flush, where `Writer` reports
  it in one line naming the directory. Other threads' errors are printed as usual."""
  previous = threading.excepthook
  if getattr(previous, "rnnlab_tensorboard", False):
    return

  def hook(args: Any) -> None:
    if not (issubclass(args.exc_type, OSError)
            and type(args.thread).__name__ == "_AsyncWriterThread"):
      previous(args)

  hook.rnnlab_tensorboard = True
  threading.excepthook = hook


def truncate(workdir: str, step: int) -> None:
  """Drops every event of a step > `step` from workdir's event files (rewritten in place, wall
  times kept). Unreadable tails (a record cut short by a kill) are dropped too."""
  files = _event_files(workdir)
  if not files:
    return
  try:
    from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer.record_writer import RecordWriter  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("tensorboard is not installed: the event files in %s were not truncated to "
                    "step %d", logdir(workdir), step)
    return
  for path in files:
    # Raw records, written back byte for byte (the parsing loader would migrate their format).
    records = list(event_file_loader.RawEventFileLoader(path).Load())
    kept = [r for r in records if event_pb2.Event.FromString(r).step <= step]  # header: step 0
    if len(kept) == len(records):
      continue
    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    for record in kept:
      writer.write(record)
    run_files.atomic_write(path, buffer.getvalue())

