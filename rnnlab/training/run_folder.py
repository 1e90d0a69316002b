"""The run folder: its one owner. File names, the atomic write, config.json, the lock, what a
resumed run starts from, and the run's record (what its results are read from, copied elsewhere).

A run's workdir holds:
    config.json      the resolved config (written at start, compared on every resume)
    metrics.jsonl    one JSON object per logged step
    summary.json     final evaluation metrics, steps_to_solve, wall time
    checkpoints/     the latest `train.keep_checkpoints` states (orbax)
    best_checkpoint/ the best state by the task's headline metric (orbax)
    tensorboard/     the metrics as TensorBoard scalars
    .lock            held (flock) by the process training the run; .lock.owner names it

Resume. A run can be killed at any moment, so a workdir can hold any mix of: a latest checkpoint
at step S (or none), metric rows, TensorBoard events and best checkpoints of steps after S (logged
and saved after S, before the kill), a half-written checkpoint under orbax's temporary name, and
temporary files of `atomic_write`. `open_run` rewinds all of it to S -- rows, events and best
checkpoints of later steps are dropped -- so that the resumed run, which replays the steps after S
exactly (per-step keys), writes every one of them once, as an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import time
from typing import Any, Iterator, Sequence

import filelock
import ml_collections
from absl import logging

from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.training import defaults, metrics_log, run_files
from rnnlab.training.run_files import (  # noqa: F401
  BEST_CHECKPOINT_DIR,
  CHECKPOINT_DIR,
  CONFIG_FILE,
  METRICS_FILE,
  SUMMARY_FILE,
  TENSORBOARD_DIR,
  atomic_write,
  write_error,
)

LOCK_FILE = ".lock"
LOCK_OWNER_FILE = ".lock.owner"

# Keys that may change between a run and its resumption (how long and how it is logged).
RESUMABLE_KEYS = {"num_steps", "log_every", "eval_every", "checkpoint_every",
                  "keep_checkpoints", "stop_when_solved", "on_nonfinite", "seed_map"}
# A config.json without these sections was not written by rnnlab (or was edited into another file).
_SECTIONS = ("task", "model", "train")


def check_workdir(workdir: str) -> None:
  """Creates `workdir` if needed and checks that this process can write into it."""
  run_files.check_writable_dir(workdir, "--workdir")


def read_config_json(path: str) -> dict[str, Any]:
  """A saved config.json, or an error naming it if it is not a config (edited by hand, damaged)."""
  fix = "restore it from a copy of the run, or start a new --workdir"
  try:
    with open(path) as f:
      saved = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise RnnlabError(f"{path} is not a valid rnnlab config ({e}); {fix}") from None
  if not isinstance(saved, dict):
    raise RnnlabError(f"{path} is not a valid rnnlab config (a JSON {type(saved).__name__}, not an "
                      f"object of sections {', '.join(_SECTIONS)}); {fix}")
  missing = [s for s in _SECTIONS if not isinstance(saved.get(s), dict)]
  if missing:
    raise RnnlabError(f"{path} is not a valid rnnlab config (no section {', '.join(missing)}); "
                      f"{fix}")
  return saved


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config saved by a run in `workdir`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise RnnlabError(f"{path} does not exist: {workdir!r} holds no rnnlab run "
                      "(train one with experiments.train first)")
  # A key added to rnnlab after the run was made counts as its default (the run used that
  # default's behaviour), so an old run evaluates and resumes with today's code.
  return ml_collections.ConfigDict(with_base_defaults(read_config_json(path)))


def with_base_defaults(config_dict: dict[str, Any]) -> dict[str, Any]:
  """`config_dict` with every key of rnnlab.training.defaults it lacks filled in with its default.

  A run saved before a key existed (e.g. model.residual) ran with that key's default behaviour,
  so it still matches a config that leaves the key at its default.
  """
  out = json.loads(json.dumps(config_dict))
  for section, section_defaults in defaults.get_config().to_dict().items():
    if isinstance(section_defaults, dict) and isinstance(out.get(section), dict):
      for key, value in section_defaults.items():
        out[section].setdefault(key, value)
  return out


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
  out = with_base_defaults(config_dict)
  for key in RESUMABLE_KEYS:
    out.get("train", {}).pop(key, None)
  return out


def _diff(a: dict, b: dict, prefix: str = "") -> str:
  """The first key whose value differs, as `config.KEY: saved A, now B` ("" if none)."""
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key), b.get(key)
    if isinstance(va, dict) and isinstance(vb, dict):
      d = _diff(va, vb, f"{prefix}{key}.")
      if d:
        return d
    elif va != vb:
      return f"config.{prefix}{key}: saved {va!r}, now {vb!r}"
  return ""


def check_same_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """The saved config of `workdir` (None for a new run); refuses one of a different experiment."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  saved = read_config_json(path)
  diff = _diff(_comparable(saved), _comparable(config.to_dict()))
  if diff:
    raise ConfigError(
        f"{workdir!r} holds a run with a different config ({diff}); resuming it with this "
        "config would mix two experiments. Use a new --workdir, or the saved config.")
  return saved


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str, write: bool = True) -> None:
  """Creates the workdir, checks it is writable and holds no run of a different config, and (with
  `write`) saves `config` as its config.json."""
  check_workdir(workdir)
  check_same_run(config, workdir)
  if write:
    atomic_write(os.path.join(workdir, CONFIG_FILE),
                 json.dumps(config.to_dict(), indent=2, sort_keys=True))


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_steps(workdir: str, best: bool = False) -> list[int]:
  """The complete checkpoints' steps, ascending: orbax names a finished save `<step>` and one in
  progress (or killed) `<step>.orbax-checkpoint-tmp*`."""
  directory = os.path.join(workdir, BEST_CHECKPOINT_DIR if best else CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def resume_step(workdir: str) -> int | None:
  """The step a run in `workdir` resumes from: its latest complete checkpoint (None: from scratch).

  Only checkpoints/ counts: the best checkpoint may be of a step whose metric rows were never
  logged (killed before the next latest checkpoint), and it is rewound with them.
  """
  steps = checkpoint_steps(workdir)
  return steps[-1] if steps else None


def _check_not_shorter(config: ml_collections.ConfigDict, workdir: str, start: int | None) -> None:
  if start is not None and start > config.train.num_steps:
    raise ConfigError(
        f"{workdir!r} holds a run already trained to step {start}, past "
        f"config.train.num_steps={config.train.num_steps}; a run is never shortened (config.json "
        f"is left as it is). Pass --config.train.num_steps={start} (or more) to evaluate or "
        "continue it, or use a new --workdir for a shorter run.")


def _rewind(workdir: str, step: int) -> None:
  """Drops what a killed session left after `step`: metric rows, TensorBoard events, best
  checkpoints, and temporary files of writes cut short."""
  metrics_log.truncate(workdir, step)
  best_dir = os.path.join(workdir, BEST_CHECKPOINT_DIR)
  for stale in checkpoint_steps(workdir, best=True):
    if stale > step:
      run_files.remove_checkpoint(best_dir, stale)
      logging.info("Removed the best checkpoint of step %d (after the resumed step %d): the "
                   "resumed run evaluates that step again.", stale, step)
  for name in (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, LOCK_OWNER_FILE):
    for leftover in glob.glob(os.path.join(glob.escape(workdir), f"{name}.tmp.*")):
      os.remove(leftover)  # the run's lock is held: no writer of this run is alive


# ----------------------------------------------------------------------------- the record

RECORD_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE)


def copy_record(workdir: str, dest: str, extra_files: Sequence[str] = (),
                checkpoints: bool = False) -> None:
  """Copies the run's record into the new folder `dest`: the files its results are read from
  (config.json, metrics.jsonl, summary.json and those of `extra_files` that exist) and, with
  `checkpoints`, its latest complete checkpoint and best checkpoint, so that `dest`, used as a
  workdir, resumes the run exactly where it stood. TensorBoard events and the lock stay behind.

  The run may be training meanwhile. The checkpoints are copied first, so the rows logged up to
  them are in the copied metrics (the rows after them are rewound by a resume anyway); a metrics
  row still being written is left out; and a checkpoint counts as copied only if orbax completed
  it and had not begun to replace it when the copy ended (tried again otherwise).
  """
  os.makedirs(dest)
  if checkpoints:
    for best in (False, True):
      _copy_checkpoints(workdir, dest, best)
  for name in (*RECORD_FILES, *extra_files):
    try:
      with open(os.path.join(workdir, name), "rb") as f:
        data = f.read()
    except FileNotFoundError:
      continue
    if name == METRICS_FILE:
      data = data[:data.rfind(b"\n") + 1]  # whole rows only
    atomic_write(os.path.join(dest, name), data)


def _copy_checkpoints(workdir: str, dest: str, best: bool, tries: int = 10) -> None:
  """The latest complete checkpoint (best: the one best checkpoint). orbax deletes a replaced
  step file by file after the new one is complete, so a copy is kept only if no newer complete
  step appeared while it was made (best: if the one step listed stayed the only one)."""
  name = BEST_CHECKPOINT_DIR if best else CHECKPOINT_DIR
  for attempt in range(tries):
    if attempt:
      time.sleep(1.0)
    steps = checkpoint_steps(workdir, best)
    if not steps:
      return
    if best and len(steps) > 1:
      continue  # a new best is replacing the old one
    target = os.path.join(dest, name, str(steps[-1]))
    try:
      shutil.copytree(os.path.join(workdir, name, str(steps[-1])), target)
    except (FileNotFoundError, shutil.Error):
      shutil.rmtree(target, ignore_errors=True)
      continue
    now = checkpoint_steps(workdir, best)
    if (now == steps) if best else (now[-1:] == steps[-1:]):
      return
    shutil.rmtree(target, ignore_errors=True)
  raise RnnlabError(f"could not copy a checkpoint of {os.path.join(workdir, name)}: a newer one "
                    f"replaced it during each of {tries} tries; run the same command again")


# ----------------------------------------------------------------------------- the lock

@contextlib.contextmanager
def _lock(workdir: str) -> Iterator[None]:
  """Holds the run's lock for the block, or refuses naming the process that holds it.

  flock: the OS releases it when the holder dies (even by SIGKILL), so a killed run never blocks
  its resumption. The owner file is only for the message.
  """
  lock = _acquire(workdir)
  owner_path = os.path.join(workdir, LOCK_OWNER_FILE)
  try:
    atomic_write(owner_path, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    yield
  finally:
    with contextlib.suppress(OSError):
      os.remove(owner_path)  # a finished run leaves its folder as it found it, but for .lock
    lock.release()


def _acquire(workdir: str) -> filelock.FileLock:
  """The run's lock, taken without waiting, or the error naming the process that holds it."""
  lock = filelock.FileLock(os.path.join(workdir, LOCK_FILE), timeout=0)
  try:
    lock.acquire()
  except filelock.Timeout:
    raise _in_use(workdir) from None
  return lock


def _in_use(workdir: str) -> RnnlabError:
  return RnnlabError(f"{workdir!r} is in use: {_owner(os.path.join(workdir, LOCK_OWNER_FILE))} "
                     "is training it; wait for it to finish (or stop it), or use another "
                     "--workdir")


def check_not_in_use(workdir: str) -> None:
  """The RnnlabError `open_run` would raise if another process trains the run in `workdir` now
  (its lock is held); writes nothing. For a sweep or study, before it records anything."""
  if os.path.exists(os.path.join(workdir, LOCK_FILE)):
    _acquire(workdir).release()


def _owner(path: str) -> str:
  try:
    with open(path) as f:
      owner = json.load(f)
    return f"process {owner['pid']} on {owner['host']} (since {owner['since']})"
  except (OSError, ValueError, KeyError, TypeError):
    return "another process (it has not written its name yet)"


@contextlib.contextmanager
def open_run(config: ml_collections.ConfigDict, workdir: str, is_main: bool = True
             ) -> Iterator[int | None]:
  """The run in `workdir`, opened for training by this process: yields the step to resume from.

  Checks (writing nothing if one fails): the workdir is a writable directory, holds no run of
  another config and none trained past `config.train.num_steps`, and no other process trains it.
  Then, on process 0 only (the processes of a multi-host run share the workdir and the lock is the
  run's, not a process's): holds the lock for the block, saves config.json, and rewinds the folder
  to the resumed step (see the module docstring).
  """
  check_workdir(workdir)
  saved = check_same_run(config, workdir)
  start = resume_step(workdir)
  _check_not_shorter(config, workdir, start)
  if not is_main:
    yield start
    return
  with _lock(workdir):
    new = config.to_dict()
    if saved is not None:
      changed = _diff(with_base_defaults(saved)["train"], new["train"], "train.")
      if changed:
        logging.info("Resuming with a changed %s (config.json updated).", changed)
    atomic_write(os.path.join(workdir, CONFIG_FILE), json.dumps(new, indent=2, sort_keys=True))
    _rewind(workdir, start or 0)
    yield start
