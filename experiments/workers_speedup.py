r"""Wall time of a study in 1 worker process against N: what `--parallel` buys on this machine.

  python -m experiments.workers_speedup                                  # 4 points, 1 vs 2
  python -m experiments.workers_speedup --results_dir=experiments/results  # the committed report

Runs the same small grid (configs/compare.py:quick with `--steps` per point; cells x tasks give
the points) from scratch once per worker count, each into its own temporary workdir, and writes
workers_speedup.md: wall seconds per worker count and the ratio to one worker.
"""

import os
import shlex
import sys
import tempfile
import time

from absl import app, flags

from configs import compare as compare_config
from experiments import cli, timing
from rnnlab.studies import memory_report, memory_study, report
from rnnlab.training import run_folder

_CELLS = flags.DEFINE_string("cells", "vanilla,gru", "Grid cells (x 2 tasks = the points).")
_STEPS = flags.DEFINE_integer("steps", 400, "Training steps per point.")
_HIDDEN = flags.DEFINE_integer("hidden", 32, "Hidden size.")
_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "Worker counts to time.")
_RESULTS = flags.DEFINE_string("results_dir",
                               os.path.join(tempfile.gettempdir(), "rnnlab_workers_speedup"),
                               "Directory of workers_speedup.md (experiments/results: the "
                               "committed report).")
REPORT_FILE = "workers_speedup.md"


def _config():
  config = compare_config.get_config("quick")
  config.compare.cells = _CELLS.value
  config.model.hidden_size = _HIDDEN.value
  config.train.num_steps = _STEPS.value
  config.train.log_every = config.train.eval_every = config.train.checkpoint_every = 100
  budget = f"train.num_steps={_STEPS.value}"
  config.compare.overrides.copy = config.compare.overrides.adding = budget
  config.train.stop_when_solved = False  # every point runs its whole budget, in both settings
  return config


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  rows, load_before = [], timing.load_average()
  for workers in (int(w) for w in _WORKERS.value):
    with tempfile.TemporaryDirectory(prefix=f"rnnlab-workers{workers}-") as tmp:
      start = time.perf_counter()
      points = memory_study.run(_config(), tmp, tmp, "workers_speedup", parallel=workers)
      wall = time.perf_counter() - start
    rows.append({"workers": workers, "points": len(points), "wall": wall})
    print(f"{workers} worker(s): {len(points)} points in {wall:.1f} s", flush=True)
  for r in rows:
    r["ratio"] = r["wall"] / rows[0]["wall"]
  command = "python -m experiments.workers_speedup " + " ".join(
      shlex.quote(a) for a in sys.argv[1:])
  text = "\n".join([
      "# A study in parallel worker processes (`--parallel`)", "",
      f"- Command: `{command}`",
      f"- Date: {memory_report.now()}; machine: {memory_report.machine_description()}; load "
      f"average {load_before} before the first run, {timing.load_average()} after the last",
      f"- Grid: configs/compare.py:quick with cells {{{_CELLS.value}}} x tasks {{copy, adding}}, "
      f"hidden {_HIDDEN.value}, {_STEPS.value} steps per point (no early stop), 2 seeds per "
      "point; each worker count runs the whole grid from scratch (compilation included) in "
      "fresh worker processes", "",
      report.markdown_table(rows, ["workers", "points", "wall", "ratio"],
                            ["worker processes", "points", "wall s", "x one worker"],
                            formatters={"wall": lambda r: f"{r['wall']:.1f}",
                                        "ratio": lambda r: f"{r['ratio']:.2f}"}),
      ""])
  path = os.path.join(_RESULTS.value, REPORT_FILE)
  run_folder.atomic_write(path, text)
  print(path)


if __name__ == "__main__":
  cli.run(main)
