"""The run folder's file names and the one atomic write every writer of rnnlab uses (below
`run_folder`, which owns the folder's life: checks, lock, resume; the metrics log, TensorBoard
and checkpoint writers import only this)."""

from __future__ import annotations

import os
import shutil

from rnnlab.errors import RnnlabError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = "best_checkpoint"
TENSORBOARD_DIR = "tensorboard"
# orbax deletes directories with this marker in their name when it opens a checkpoint directory.
_ORBAX_TMP = ".orbax-checkpoint-tmp"


def check_writable_dir(path: str, flag: str) -> None:
  """Creates directory `path` if needed and checks that this process can write into it, before
  anything is trained; RnnlabError naming `flag` (the option that gave the path) otherwise."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise RnnlabError(f"{flag} {path!r} is a regular file, not a directory; give the path of a "
                      "directory (it is created if missing)")
  try:
    os.makedirs(path, exist_ok=True)
    # One probe per process: the processes of a multi-host run may share this directory.
    probe = os.path.join(path, f".write_test.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise RnnlabError(f"cannot write to {flag.lstrip('-')} {path!r}: {e.strerror}. "
                      f"Choose a writable {flag}.") from None


def atomic_write(path: str, data: str | bytes) -> None:
  """Writes `data` to `path` so that a reader (or a later run after a kill) sees either the old
  file or the whole new one, never a part.

  The temporary file is this process's own (`path.tmp.PID`), so processes writing the same file at
  once (sweep shards on a shared file system) never collide; the last `os.replace` wins. A failed
  write (disk full, permissions) is an RnnlabError naming the path; the old file is untouched.
  """
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
    os.replace(tmp, path)
  except OSError as e:
    raise write_error(path, e) from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def remove_checkpoint(directory: str, step: int) -> None:
  """Deletes the checkpoint `directory/<step>` so that a kill half-way never leaves a damaged
  step: it is renamed to an orbax temporary name first, which the next run's checkpoint manager
  deletes."""
  doomed = os.path.join(directory, f"{step}{_ORBAX_TMP}-removed")
  os.replace(os.path.join(directory, str(step)), doomed)
  shutil.rmtree(doomed)


def write_error(path: str, error: OSError) -> RnnlabError:
  """The one-line error for a failed write of `path` (the disk filling up, most often)."""
  reason = error.strerror or str(error)
  return RnnlabError(f"could not write {path}: {reason}. Free space (or fix permissions) there and "
                     "run the same command again: it resumes from the latest checkpoint.")


# ----------------------------------------------------------------------------- config.json
