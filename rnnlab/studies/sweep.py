"""Hyperparameter sweeps: config overrides -> points, one workdir each; run, shard, skip, merge.

A sweep is a list of points. A point is a set of config overrides, a name made from them and a
workdir `base_workdir/name` in which it is an ordinary training run (`train.train_and_evaluate`),
so every point is resumable on its own and any scheduler can run the points in parallel:

    overrides = sweep_spec.product(sweep_spec.parse_spec("model.cell=lstm,gru", config))
    points = sweep.make_points(config, overrides, base)
    sweep.run_points(sweep.shard(points, num_shards, shard_index))   # or any launcher
    rows = sweep.collect(points); sweep_table.write_table(rows, base, axes)

The overrides come from `rnnlab.studies.sweep_spec` (the --sweep syntax or `get_sweep()`).

Launching is pluggable: `run_points(points, run=...)` takes any function of one `Point`, and the
submitit launchers of `rnnlab.studies.launch` submit `run_point(point)` per point (each is
independent); `launch.run_sweep` is a whole sweep (points, training, table) and
`merge(base_workdir)` rebuilds the table from the workdirs at any time.

Files under base_workdir: sweep.json (the points: names and overrides), one workdir per point,
sweep.md and sweep.csv (one row per point, built only from the point workdirs' files).
"""

from __future__ import annotations

import concurrent.futures
import copy
import ctypes
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pickle
import signal
import threading
import time
from typing import Any, Callable, Sequence

import ml_collections
from absl import flags, logging

from rnnlab.errors import ConfigError, Interrupted, NonFiniteError, RnnlabError
from rnnlab.studies import sweep_spec, sweep_table
from rnnlab.training import config_check, run_folder, stop_signals

MANIFEST_FILE = "sweep.json"
TABLE_MD = sweep_table.TABLE_MD
TABLE_CSV = sweep_table.TABLE_CSV
CONFIG_FILE = run_folder.CONFIG_FILE
DIVERGED_FILE = sweep_table.DIVERGED_FILE
MAX_NAME_BYTES = 200  # a point's directory name; leaves room below the usual 255-byte limit

Overrides = sweep_spec.Overrides

# Short names of common keys, for point names ("cell=lstm,lr=0.001").
_SHORT_NAMES = {
    "model.cell": "cell", "train.learning_rate": "lr", "model.hidden_size": "hidden",
    "model.num_layers": "layers", "model.bidirectional": "bidir", "train.batch_size": "batch",
    "train.num_steps": "steps", "task.name": "task", "task.length": "T",
    "model.recurrent_scale": "scale", "train.grad_clip": "clip", "model.dropout_rate": "dropout",
}


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of a sweep.

  Attributes:
    name: directory name made from the overrides, e.g. "cell=lstm,lr=0.001".
    overrides: ((config key, value), ...) applied to the base config, in sweep-axis order.
    workdir: base_workdir/name.
    config: the resolved config of this run (base config + overrides), validated.
  """

  name: str
  overrides: Overrides
  workdir: str
  config: ml_collections.ConfigDict = dataclasses.field(compare=False, repr=False)


# ----------------------------------------------------------------------------- points

def _short(key: str, keys: Sequence[str]) -> str:
  name = _SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])
  clashes = [k for k in keys if _SHORT_NAMES.get(k, k.rsplit(".", 1)[-1]) == name]
  return name if len(clashes) == 1 else key


def _format(value: Any) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return repr(value)
  return str(value)


def point_name(overrides: Overrides, all_keys: Sequence[str] | None = None) -> str:
  """"cell=lstm,lr=0.001": short key names (full ones when two would clash), safe for a path."""
  keys = list(all_keys) if all_keys is not None else [k for k, _ in overrides]
  name = ",".join(f"{_short(k, keys)}={_format(v)}" for k, v in overrides)
  name = name.replace(os.sep, "_").replace("\0", "_") or "default"
  if len(name.encode()) > MAX_NAME_BYTES:
    # Too long for a directory name (255 bytes on common file systems): a stable prefix and a
    # digest of the full name; sweep.json and the table keep the overrides.
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    name = name.encode()[:MAX_NAME_BYTES - 13].decode(errors="ignore") + "~" + digest
  return name


def apply_overrides(config: ml_collections.ConfigDict, overrides: Overrides
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with the overrides set (the original is not changed)."""
  out = copy.deepcopy(config)
  for key, value in overrides:
    *path, last = key.split(".")
    node = out
    for part in path:
      node = node[part]
    try:
      node[last] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f"cannot set '{key}' to {value!r}: {e}") from None
  return out


def make_points(config: ml_collections.ConfigDict, overrides_list: Sequence[Overrides],
                base_workdir: str, names: Sequence[str] | None = None) -> list[Point]:
  """One validated Point per overrides (ConfigError naming the point if a config is invalid)."""
  all_keys = list(dict.fromkeys(k for ov in overrides_list for k, _ in ov))
  points = []
  for i, overrides in enumerate(overrides_list):
    name = names[i] if names is not None else point_name(overrides, all_keys)
    resolved = apply_overrides(config, overrides)
    try:
      config_check.validate(resolved)
    except ConfigError as e:
      raise ConfigError(f"sweep point {name!r}: {e}") from None
    points.append(Point(name, tuple(overrides), os.path.join(base_workdir, name), resolved))
  duplicates = sorted({p.name for p in points if [q.name for q in points].count(p.name) > 1})
  if duplicates:
    raise ConfigError(f"two sweep points have the same name {duplicates[0]!r}; sweep distinct "
                      "values")
  return points


def shard(points: Sequence[Point], num_shards: int, shard_index: int) -> list[Point]:
  """Every `num_shards`-th point starting at `shard_index` (shards are disjoint and cover all)."""
  check_shard(num_shards, shard_index)
  return list(points[shard_index::num_shards])


def check_shard(num_shards: int, shard_index: int) -> None:
  """ConfigError unless shard `shard_index` of `num_shards` exists."""
  if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
    raise ConfigError(f"num_shards must be an integer >= 1, got {num_shards!r}")
  if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
    raise ConfigError(f"shard_index must be in [0, {num_shards}), got {shard_index!r}")


# ----------------------------------------------------------------------------- running

def status(point: Point) -> str:
  """"finished" (summary.json says the budget was used or every seed solved), "diverged" (its
  loss became non-finite: a result, not retried, since a rerun would repeat it exactly),
  "partial" (a run was started: it will resume from its latest checkpoint), or "new"."""
  if os.path.exists(os.path.join(point.workdir, DIVERGED_FILE)):
    return "diverged"
  summary = sweep_table.read_summary(point.workdir)
  t = point.config.get("train")
  if summary is not None and t is not None and (
      summary.get("steps", 0) >= t.num_steps or (summary.get("solved") and t.stop_when_solved)):
    return "finished"
  if os.path.exists(os.path.join(point.workdir, CONFIG_FILE)):
    return "partial"
  return "new"


def is_done(point: Point) -> bool:
  """Whether `point` has its result: finished, or diverged (never trained again)."""
  return status(point) in ("finished", "diverged")


def check_parallel(parallel: int) -> None:
  """ConfigError unless `parallel` (worker processes) is an integer >= 1."""
  if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
    raise ConfigError(f"parallel must be an integer >= 1, got {parallel!r}")


def run_point(point: Point) -> dict[str, Any] | None:
  """Trains one point in its workdir unless finished or diverged (resuming a partial one).

  A point whose loss becomes non-finite is recorded in its workdir (diverged.json: the step and
  the message) and the sweep goes on to the next point: divergence is one of the results a
  sweep measures. Returns the run's summary, or None when it was skipped or diverged.
  """
  from rnnlab.training import train  # local: keeps parsing and merging free of model imports

  state = status(point)
  if state in ("finished", "diverged"):
    # Same saved config? (A finished run of another config must not be reported as this one.)
    train.prepare_workdir(point.config, point.workdir, write=False)
    logging.info("sweep: %s is %s, skipped", point.name, state)
    return None
  logging.info("sweep: running %s in %s", point.name, point.workdir)
  try:
    return train.train_and_evaluate(point.config, point.workdir)
  except NonFiniteError as e:
    logging.warning("sweep: %s diverged: %s", point.name, e)
    run_folder.atomic_write(os.path.join(point.workdir, DIVERGED_FILE),
                      json.dumps({"step": e.step, "message": str(e)}, indent=2) + "\n")
    return None


def run_points(points: Sequence[Point], run: Callable[[Point], Any] = run_point,
               parallel: int = 1) -> list[Any]:
  """Runs the points with `run` and returns its results, in point order.

  parallel: worker processes. 1 runs the points one after another in this process; N > 1 starts
  min(N, unfinished points) fresh Python processes (spawned, never forked from this JAX process)
  that take the points one at a time, in the given order, as they free up. XLA:CPU runs a scan's
  steps one after another, so on a 2-core machine a second worker uses the core one run leaves
  mostly idle; each worker is pinned to its share of the CPUs (`worker_cpus`) and exits when
  this process dies. Each point is an ordinary resumable run in its own workdir, so a killed
  study resumes where it stopped. `run` must then be a module-level function (it is pickled to
  the workers).

  Stopping: Ctrl-C or SIGTERM (to this process, or to its whole process group as a terminal
  does) stops every running point at its next step boundary, its checkpoint saved, starts no
  other, and raises `Interrupted` naming the points and steps; a second one aborts at once.
  A point that fails stops the others the same way before its error is raised, so an error is
  reported as soon as it happens. A worker that dies (out of memory, killed) is one RnnlabError
  naming the points that were training.
  """
  check_parallel(parallel)
  pending = [p for p in points if not is_done(p)]
  if parallel == 1 or len(pending) <= 1:
    results = []
    for i, point in enumerate(points):
      try:
        results.append(run(point))
      except Interrupted as e:
        later = sum(not is_done(p) for p in points[i + 1:])
        raise _stopped({point.name: e.step}, later, e.exit_code) from None
    return results
  return _run_in_workers(points, pending, run, min(parallel, len(pending)))


def _run_in_workers(points: Sequence[Point], pending: Sequence[Point],
                    run: Callable[[Point], Any], workers: int) -> list[Any]:
  context = multiprocessing.get_context("spawn")
  cpus = context.Queue()
  for cpu in worker_cpus(workers):
    cpus.put(cpu)
  # True: each worker stops its point at a step boundary and begins no other. A lock-free shared
  # flag, not an Event: a worker killed while waiting on an Event's lock would block every
  # other process that sets or reads it.
  stop = context.RawValue(ctypes.c_bool, False)
  # Polled, not raised in the handler: an abort must not land inside the pool's locks.
  request = stop_signals.StopRequest("stopping the study's workers after their current step")

  results: dict[str, Any] = {}
  failures: dict[str, BaseException] = {}
  broken: list[str] = []  # points whose worker, or another worker, died abruptly
  with (stop_signals.handling(request.handle, (signal.SIGINT, signal.SIGTERM)),
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                               initializer=_init_worker,
                                               initargs=(cpus, os.getpid(), stop,
                                                         _log_filters())) as pool):
    try:
      with stop_signals.blocked():  # the workers are spawned here, with them blocked
        futures = {pool.submit(_run_spec, run, point_spec(p)): p.name for p in pending}
      not_done = set(futures)
      while not_done:
        if request.aborted:
          raise KeyboardInterrupt
        done, not_done = concurrent.futures.wait(
            not_done, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
          try:
            results[futures[future]] = future.result()
          except concurrent.futures.process.BrokenProcessPool:
            broken.append(futures[future])  # the pool ends the other workers (SIGTERM: saved)
          except Exception as e:  # pylint: disable=broad-except
            failures[futures[future]] = e
        if request.requested or failures or broken:
          stop.value = True  # each worker signals itself (`_init_worker`)
    except BaseException:
      for child in multiprocessing.active_children():
        child.kill()
      pool.shutdown(wait=False, cancel_futures=True)
      raise
  errors = [e for e in failures.values() if not isinstance(e, Interrupted)]
  if errors:
    raise errors[0]
  if broken:
    begun = [p.name for p in pending if p.name in broken and status(p) == "partial"]
    raise RnnlabError(
        "a worker process died abruptly (killed by a signal, or by the OS when memory ran out: "
        f"see `dmesg`) while {', '.join(begun) or 'the study'} trained; the study stopped. Run "
        "the same command to resume: each point resumes from its latest checkpoint")
  not_started = sum(r == _NOT_STARTED for r in results.values())
  if failures or not_started:
    codes = [request.exit_code] * request.requested + [e.exit_code for e in failures.values()]
    own = [c for c in codes if c != 128 + stop_signals.STUDY_STOP]
    raise _stopped({name: e.step for name, e in failures.items()}, not_started,
                   own[0] if own else 130)
  # Finished, every point (a stop signal that came after the last step changes nothing).
  return [results[p.name] if p.name in results else run(p) for p in points]


def _stopped(steps: dict[str, int | None], not_started: int, exit_code: int) -> Interrupted:
  """The Interrupted of a sweep: which points stopped at which step, how many were not begun."""
  where = ", ".join(f"{name} at step {step}" for name, step in steps.items()) or "no point running"
  later = f"; {not_started} more not started" if not_started else ""
  return Interrupted(f"interrupted: {where}{later}; run the same command to resume",
                     exit_code=exit_code)


def worker_cpus(workers: int) -> list[set[int] | None]:
  """The CPUs each of `workers` worker processes is pinned to: this process's CPUs split into
  `workers` disjoint equal parts (on 2 cores, one each: two runs sharing both cores thrash each
  other's caches and threads); None (unpinned) for all when the workers outnumber the CPUs or
  the OS cannot pin."""
  if not hasattr(os, "sched_getaffinity"):
    return [None] * workers
  available = sorted(os.sched_getaffinity(0))
  share = len(available) // workers
  if share < 1:
    return [None] * workers
  return [set(available[i * share:(i + 1) * share]) for i in range(workers)]


_NOT_STARTED = "not started"  # a worker's answer for a point it was told not to begin
_stop: Any = None  # a worker's: its study's stop flag (`_run_in_workers`)


def _log_filters() -> tuple[bytes, ...]:
  """The filters of this process's absl log handler (the entry point's, which keep library
  chatter out of the log: `experiments.cli`), pickled for a worker to take along."""
  out = []
  for f in logging.get_absl_handler().filters:
    try:
      out.append(pickle.dumps(f))
    except (pickle.PicklingError, AttributeError, TypeError):
      continue
  return tuple(out)


def _init_worker(cpus: Any, parent_pid: int, stop: Any, log_filters: Sequence[bytes] = ()
                 ) -> None:
  """A worker: pinned to its CPUs; logging through its study's filters (`log_filters`);
  stopped only by its study, which sets the shared flag `stop` (the worker's watcher thread then
  sends it STUDY_STOP: its point stops at a step boundary, and no other begins); deaf to the
  terminal's Ctrl-C, which its study answers; exits when the study process dies. It starts with
  the stop signals blocked (`stop_signals.blocked`) and unblocks them once its handlers are
  set."""
  global _stop
  _stop = stop
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  for signum in (signal.SIGTERM, stop_signals.STUDY_STOP):  # between points; a run has its own
    signal.signal(signum, stop_signals.note)
  stop_signals.unblock()
  flags.FLAGS.mark_as_parsed()  # a worker parses none: without this absl warns at its 1st line
  logging.use_absl_handler()  # as in the study's process (absl.app), not Python's default one
  logging.set_verbosity(logging.INFO)
  for pickled in log_filters:
    try:
      logging.get_absl_handler().addFilter(pickle.loads(pickled))
    except Exception:  # noqa: BLE001 -- a filter this process cannot load (from __main__)
      pass  # its lines show, nothing worse
  mine = cpus.get()
  if mine is not None:
    os.sched_setaffinity(0, mine)

  def watch() -> None:  # a killed study must not leave its workers training
    told = False
    while os.getppid() == parent_pid:
      if stop.value and not told:
        os.kill(os.getpid(), stop_signals.STUDY_STOP)  # to the main thread: the run's handler
        told = True
      time.sleep(0.5)
    os._exit(1)
  threading.Thread(target=watch, daemon=True).start()


def _run_spec(run: Callable[[Point], Any], spec: dict[str, Any]) -> Any:
  if stop_signals.received() is not None or (_stop is not None and _stop.value):
    return _NOT_STARTED
  try:
    return run(point_from_spec(spec))
  except BaseException:
    if _stop is not None:
      _stop.value = True  # the study stops: this worker begins no further point, nor do the others
    raise


def point_spec(point: Point) -> dict[str, Any]:
  """A point as plain data (JSON-able), for a worker process or a cluster job."""
  return {"name": point.name, "overrides": [[k, v] for k, v in point.overrides],
          "workdir": point.workdir, "config": json.loads(json.dumps(point.config.to_dict()))}


def point_from_spec(spec: dict[str, Any]) -> Point:
  """The Point that `point_spec` wrote."""
  return Point(spec["name"], tuple((k, v) for k, v in spec["overrides"]), spec["workdir"],
               ml_collections.ConfigDict(spec["config"]))


# ----------------------------------------------------------------------------- manifest

def write_manifest(base_workdir: str, points: Sequence[Point], axes: Sequence[str],
                   extra: dict[str, Any] | None = None) -> None:
  """sweep.json: the points (name, overrides) and the axes, so `merge` can rebuild the table."""
  data = {"axes": list(axes),
          "points": [{"name": p.name, "overrides": [[k, v] for k, v in p.overrides]}
                     for p in points]}
  data.update(extra or {})
  run_folder.atomic_write(os.path.join(base_workdir, MANIFEST_FILE),
                          json.dumps(data, indent=2) + "\n")


def check_same_sweep(base_workdir: str, points: Sequence[Point]) -> None:
  """ConfigError if base_workdir already holds a sweep of other points: a second sweep into the
  same directory would replace sweep.json and the table of the first one."""
  path = os.path.join(base_workdir, MANIFEST_FILE)
  if not os.path.exists(path):
    return
  before = {e["name"]: e["overrides"] for e in read_manifest(base_workdir)["points"]}
  now = json.loads(json.dumps({p.name: [list(o) for o in p.overrides] for p in points}))
  if now != before:
    added, missing = sorted(set(now) - set(before)), sorted(set(before) - set(now))
    detail = "; ".join(
        [f"new points: {_first(added)}"] * bool(added)
        + [f"points of the old sweep not in this one: {_first(missing)}"] * bool(missing))
    raise ConfigError(f"{base_workdir!r} holds another sweep ({len(before)} points; "
                      f"{detail or 'the same names with other values'}); run the same sweep "
                      "to resume it, or give a new workdir")


def _first(names: Sequence[str], n: int = 3) -> str:
  return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def read_manifest(base_workdir: str) -> dict[str, Any]:
  path = os.path.join(base_workdir, MANIFEST_FILE)
  data = sweep_table.read_json(path)
  if data is None:
    raise RnnlabError(f"{path} is missing or unreadable: {base_workdir!r} holds no sweep "
                      "(run a sweep into it first)")
  return data


def load_points(base_workdir: str) -> list[Point]:
  """The points listed in base_workdir/sweep.json, each with the config its run saved (or an
  empty config when the point has not started)."""
  from rnnlab.training import train

  points = []
  for entry in read_manifest(base_workdir)["points"]:
    workdir = os.path.join(base_workdir, entry["name"])
    has_config = os.path.exists(os.path.join(workdir, CONFIG_FILE))
    config = train.load_config(workdir) if has_config else ml_collections.ConfigDict()
    points.append(Point(entry["name"], tuple((k, v) for k, v in entry["overrides"]), workdir,
                        config))
  return points


# ----------------------------------------------------------------------------- the whole sweep

def collect(points: Sequence[Point]) -> list[dict[str, Any]]:
  """The table rows of all points, in point order."""
  return [sweep_table.point_row(p, status(p)) for p in points]


def start_sweep(config: ml_collections.ConfigDict, overrides_list: Sequence[Overrides],
                base_workdir: str,
                before_writing: Callable[[Sequence[Point]], None] = lambda points: None
                ) -> list[Point]:
  """Makes and validates every point (ConfigError before anything is written or trained),
  refuses another sweep's workdir (`check_same_sweep`), calls `before_writing(points)` (it may
  refuse too) and writes sweep.json; returns the points (for `launch.run_sweep`)."""
  points = make_points(config, overrides_list, base_workdir)
  check_same_sweep(base_workdir, points)
  before_writing(points)
  os.makedirs(base_workdir, exist_ok=True)
  write_manifest(base_workdir, points, list(dict.fromkeys(k for ov in overrides_list
                                                          for k, _ in ov)))
  return points


def merge(base_workdir: str) -> list[dict[str, Any]]:
  """Rebuilds sweep.md/sweep.csv from the point workdirs listed in sweep.json (no training)."""
  manifest = read_manifest(base_workdir)
  rows = collect(load_points(base_workdir))
  sweep_table.write_table(rows, base_workdir, manifest["axes"])
  return rows
