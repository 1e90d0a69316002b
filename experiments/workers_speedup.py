r"""Wall time of a study in 1 worker process against N: what `--parallel` buys on this machine.

  python -m experiments.workers_speedup                                  # 4 points, 1 vs 2
  python -m experiments.workers_speedup --results_dir=experiments/results  # the committed report

Runs the same small grid (the study's config, configs/compare.py, on the shortest length of each
task with `--steps` per point; cells x tasks give
the points) from scratch once per worker count, each into its own temporary workdir, and writes
workers_speedup.md: wall seconds per worker count and the ratio to one worker.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from configs import compare as compare_config
from experiments import cli, timing
from rnnlab.studies import launch, memory_report, memory_study, report, sweep
from rnnlab.training import run_files, run_folder

_CELLS = flags.DEFINE_string("cells", "lstm,gru", "Grid cells (x 2 tasks = the points; the gated "
                             "cells give points of similar cost).")
_STEPS = flags.DEFINE_integer("steps", 2000, "Training steps per point (2,000: about the fewest "
                              "a point of the study runs before its seeds are solved).")
_HIDDEN = flags.DEFINE_integer("hidden", 128, "Hidden size (the study's: 128).")
_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "Worker counts to time.")
_RESULTS = flags.DEFINE_string("results_dir",
                               os.path.join(tempfile.gettempdir(), "rnnlab_workers_speedup"),
                               "Directory of workers_speedup.md (experiments/results: the "
                               "committed report).")
_STEADY_STEPS = flags.DEFINE_integer("steady_steps", 200, "Steps timed after compilation for "
                                     "the steady-state rows (0: leave them out).")
_STEADY_CHILD = flags.DEFINE_list("steady_child", None, "Internal: time the first point's train "
                                  "step pinned to these CPUs (none: unpinned) and print JSON.")
REPORT_FILE = "workers_speedup.md"


def _config():
  """The study's config (configs/compare.py: batch, seeds, evaluation and checkpoint cadence),
  on the shortest length of each task, one direction, `--steps` per point, no early stop."""
  config = compare_config.get_config()
  config.compare.cells = _CELLS.value
  config.compare.directions = "uni"
  config.compare.copy_lengths = config.compare.copy_lengths.split(",")[0]
  config.compare.adding_lengths = config.compare.adding_lengths.split(",")[0]
  config.model.hidden_size = _HIDDEN.value
  config.train.num_steps = _STEPS.value
  budget = f"train.num_steps={_STEPS.value}"
  config.compare.overrides.copy = config.compare.overrides.adding = budget
  config.train.stop_when_solved = False  # every point runs its whole budget, in both settings
  return config


def _steady_child(cpus: list[str]) -> None:
  """Steps/s and CPU/wall of the first point's train step after compilation, pinned to `cpus`
  (["none"]: unpinned): one JSON line on stdout."""
  import jax  # pylint: disable=import-outside-toplevel

  from rnnlab.studies import memory_grid  # pylint: disable=import-outside-toplevel
  from rnnlab.training import train  # pylint: disable=import-outside-toplevel

  if cpus != ["none"]:
    os.sched_setaffinity(0, {int(c) for c in cpus})
  with tempfile.TemporaryDirectory() as tmp:
    trainer = train.Trainer(memory_grid.make_points(_config(), tmp)[0].config)
  state = trainer.init()
  state, metrics = trainer.train_step(state)
  jax.block_until_ready(metrics)
  wall, cpu_time = time.perf_counter(), time.process_time()
  for _ in range(_STEADY_STEPS.value):
    state, metrics = trainer.train_step(state)
  jax.block_until_ready(metrics)
  wall, cpu_time = time.perf_counter() - wall, time.process_time() - cpu_time
  print(json.dumps({"steps_per_sec": _STEADY_STEPS.value / wall, "cores": cpu_time / wall}))


def _steady_rows() -> list[dict]:
  """The first point's steady state alone unpinned (what one worker gets), alone on the first
  worker's CPUs, and in two processes side by side, each on its worker's CPUs (what two workers
  get; `sweep.worker_cpus`)."""
  def start(cpus: set[int] | None) -> subprocess.Popen:
    pin = ",".join(map(str, sorted(cpus))) if cpus is not None else "none"
    return subprocess.Popen([sys.executable, "-m", "experiments.workers_speedup",
                             f"--steady_child={pin}", f"--steady_steps={_STEADY_STEPS.value}",
                             f"--cells={_CELLS.value}", f"--hidden={_HIDDEN.value}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

  def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    return json.loads(out.strip().splitlines()[-1])
  rows, two = [], sweep.worker_cpus(2)
  for label, cpus in (("alone, unpinned", [None]), ("alone, pinned as worker 1 of 2", two[:1]),
                      ("two side by side, pinned as workers 1 and 2", two)):
    got = [result(p) for p in [start(c) for c in cpus]]
    rows.append({"setting": label, "processes": len(got),
                 "each": " / ".join(f"{g['steps_per_sec']:.1f}" for g in got),
                 "total": sum(g["steps_per_sec"] for g in got),
                 "cores": " / ".join(f"{g['cores']:.2f}" for g in got)})
  return rows


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _STEADY_CHILD.value is not None:
    _steady_child(_STEADY_CHILD.value)
    return
  run_files.check_writable_dir(_RESULTS.value, "--results_dir")  # before the timing
  rows, load_before, config = [], timing.load_average(), _config()
  for workers in (int(w) for w in _WORKERS.value):
    with tempfile.TemporaryDirectory(prefix=f"rnnlab-workers{workers}-") as tmp:
      start = time.perf_counter()
      points = memory_study.run(_config(), tmp, tmp, "workers_speedup",
                                training=launch.Training(parallel=workers))
      wall = time.perf_counter() - start
    rows.append({"workers": workers, "points": len(points), "wall": wall})
    print(f"{workers} worker(s): {len(points)} points in {wall:.1f} s", flush=True)
  for r in rows:
    r["ratio"] = r["wall"] / rows[0]["wall"]
  steady = _steady_rows() if _STEADY_STEPS.value > 0 and len(os.sched_getaffinity(0)) >= 2 else []
  command = " ".join(["python -m experiments.workers_speedup",
                      *(shlex.quote(a) for a in sys.argv[1:])])
  text = "\n".join([
      "# A study in parallel worker processes (`--parallel`)", "",
      f"- Command: `{command}`",
      f"- Date: {memory_report.now()}; machine: {memory_report.machine_description()}; load "
      f"average {load_before} before the first run, {timing.load_average()} after the last",
      f"- Grid: configs/compare.py (the study's batch {config.train.batch_size}, "
      f"{config.train.num_seeds} seeds, evaluation every {config.train.eval_every} and "
      f"checkpoints every {config.train.checkpoint_every} steps) with cells {{{_CELLS.value}}} "
      f"x {{copy T={config.compare.copy_lengths}, adding T={config.compare.adding_lengths}}}, "
      f"unidirectional, hidden {_HIDDEN.value}, {_STEPS.value} steps per point (no early "
      "stop); each worker count runs the whole grid from scratch (compilation included); "
      "N > 1 workers are fresh processes, each pinned to its share of the CPUs", "",
      report.markdown_table(rows, ["workers", "points", "wall", "ratio"],
                            ["worker processes", "points", "wall s", "x one worker"],
                            formatters={"wall": lambda r: f"{r['wall']:.1f}",
                                        "ratio": lambda r: f"{r['ratio']:.2f}"}),
      ""])
  if steady:
    first = _config()
    text += "\n".join([
        "", "## Steady state of one point", "",
        f"The first point (copy T={first.compare.copy_lengths}, "
        f"{_CELLS.value.split(',')[0]}), train steps per second after compilation "
        f"({_STEADY_STEPS.value} steps timed), each setting in fresh processes; cores: process "
        "CPU time / wall time:", "",
        report.markdown_table(steady, ["setting", "processes", "each", "total", "cores"],
                              ["setting", "processes", "steps/s each", "steps/s in all",
                               "cores used each"],
                              formatters={"total": lambda r: f"{r['total']:.1f}"}),
        "",
        f"One run alone keeps {steady[0]['cores']} cores busy (XLA:CPU's intra-op threads), "
        "so two workers, pinned to their CPUs, train "
        f"{steady[2]['total'] / steady[0]['total']:.2f}x the steps of one run per second: the "
        "wall-time ratio that long points approach is "
        f"{steady[0]['total'] / steady[2]['total']:.2f}, compilation and process start apart.",
        ""])
  path = os.path.join(_RESULTS.value, REPORT_FILE)
  run_folder.atomic_write(path, text)
  print(path)


if __name__ == "__main__":
  cli.run(main)
