r"""How S seeds share one program: jax.vmap against jax.lax.map against S separate runs.

  python -m experiments.seeds_speedup                                   # the study's shape
  python -m experiments.seeds_speedup --results_dir=experiments/results  # the committed report

For each cell, hidden size and seed count S, times `Trainer.train_step` with 1 seed and with
S seeds mapped each way (interleaved rounds, median; every timed call does the same work: S x
`--timed_steps` one-seed steps against `--timed_steps` S-seed steps, as S separate runs would),
and writes seeds_speedup.md: ms per step, each as a multiple of the 1-seed step (S separate runs
cost S x), and what `train.seed_map=auto` picks on this backend. Compilation is timed apart.
The process is pinned as a study's worker is (`--workers`, default one per core), so the numbers
are those of a study's seeds.
"""

import os
import shlex
import statistics
import sys
import tempfile
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from experiments import cli, timing
from rnnlab.studies import memory_grid, memory_report, report, sweep
from rnnlab.training import run_files, run_folder, train

_CONFIG = config_flags.DEFINE_config_file("config", "configs/compare.py",
                                          "A study config; its training settings are timed.",
                                          lock_config=False)
_TASK = flags.DEFINE_string("task", "copy", "Task to time.")
_LENGTH = flags.DEFINE_integer("length", 50, "Task length T.")
_CELLS = flags.DEFINE_list("cells", ["lstm", "gru", "vanilla"], "Cells to time.")
_HIDDEN = flags.DEFINE_list("hidden_sizes", None, "Hidden sizes (default: the config's).")
_SEEDS = flags.DEFINE_list("seeds", ["3", "8"], "Seed counts S.")
_STEPS = flags.DEFINE_integer("timed_steps", 5, "S-seed train steps per timed call (a 1-seed "
                              "call runs S times as many).")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Interleaved timing rounds.")
_WORKERS = flags.DEFINE_integer(
    "workers", os.cpu_count() or 1, "Time as one of this many study workers: pinned to the "
    "share of the CPUs a study with --parallel=N gives each worker (its default N: one per "
    "core); 1: the whole machine.")
_RESULTS = flags.DEFINE_string("results_dir",
                               os.path.join(tempfile.gettempdir(), "rnnlab_seeds_speedup"),
                               "Directory of seeds_speedup.md (experiments/results: the "
                               "committed report).")
REPORT_FILE = "seeds_speedup.md"


def _stepper(config, seeds: int, seed_map: str, steps: int):
  """(compile seconds, a function running `steps` train steps) for one setting."""
  c = config.copy_and_resolve_references()
  c.train.num_seeds, c.train.seed_map = seeds, seed_map
  trainer = train.Trainer(c)
  start = time.perf_counter()
  holder = [trainer.init()]
  holder[0], metrics = trainer.train_step(holder[0])
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start

  def run():
    for _ in range(steps):
      holder[0], m = trainer.train_step(holder[0])
    jax.block_until_ready(m)
  return compile_s, run


def measure(config) -> list[dict]:
  rows = []
  hidden_sizes = [int(h) for h in (_HIDDEN.value or [config.model.hidden_size])]
  for cell in _CELLS.value:
    for hidden in hidden_sizes:
      for seeds in (int(s) for s in _SEEDS.value):
        c = config.copy_and_resolve_references()
        c.task.name, c.task.length = _TASK.value, _LENGTH.value
        c.model.cell, c.model.hidden_size = cell, hidden
        setups = {"1 seed": _stepper(c, 1, "vmap", seeds * _STEPS.value),
                  "vmap": _stepper(c, seeds, "vmap", _STEPS.value),
                  "map": _stepper(c, seeds, "map", _STEPS.value)}
        rounds = timing.interleaved_rounds({k: v[1] for k, v in setups.items()},
                                           _REPEATS.value)
        ms = {k: statistics.median(v) for k, v in rounds.items()}
        one = ms["1 seed"] / (seeds * _STEPS.value)
        # Each round's own ratio (the S-seed call against the one-seed call beside it): their
        # spread is the noise the median ratio sits in.
        per_round = {k: [seeds * m / o for m, o in zip(rounds[k], rounds["1 seed"])]
                     for k in ("vmap", "map")}
        row = {"cell": cell, "hidden": hidden, "seeds": seeds, "ms_1": one,
               "ms_vmap": ms["vmap"] / _STEPS.value, "ms_map": ms["map"] / _STEPS.value,
               "compile_1": setups["1 seed"][0], "compile_vmap": setups["vmap"][0],
               "compile_map": setups["map"][0],
               "auto": train.resolve_seed_map("auto", seeds)}
        row.update(x_vmap=row["ms_vmap"] / one, x_map=row["ms_map"] / one,
                   **{f"x_{k}_rounds": f"{min(v):.2f}-{max(v):.2f}" for k, v in per_round.items()})
        row["x_auto"] = row[f"x_{row['auto']}"]
        rows.append(row)
        print(f"{cell} hidden {hidden}, {seeds} seeds: 1 seed {one:.1f} ms; vmap "
              f"{row['x_vmap']:.2f}x, map {row['x_map']:.2f}x; auto={row['auto']}", flush=True)
  return rows


def markdown(rows: list[dict], config, command: str, cpus: str) -> str:
  t = config.train
  lines = [
      "# Seeds in one program: jax.vmap vs jax.lax.map vs separate runs", "",
      f"- Command: `{command}`",
      f"- Date: {memory_report.now()}; machine: {memory_report.machine_description()}; load "
      f"average (1, 5, 15 min) {timing.load_average()} when written, this run's own load "
      "included",
      f"- Shape: task {_TASK.value} T={_LENGTH.value}, batch {t.batch_size} per seed; one "
      f"`Trainer.train_step` (forward, backward, Adam, clip {t.grad_clip}); median of "
      f"{_REPEATS.value} interleaved rounds, after compilation; a round times {_STEPS.value} "
      f"S-seed steps and S x {_STEPS.value} one-seed steps (the same work)",
      "- x = ms per step of S seeds / ms per step of 1 seed: S separate runs cost S x, so a "
      "mapping that stays at or under S x buys no worse than separate runs; \"rounds\": the "
      "lowest and highest x of single rounds (each S-seed call against the one-seed call of its "
      "round), the noise the median sits in",
      f"- `auto` on {jax.default_backend()}: what `train.seed_map=auto` picks here",
      f"- CPUs: {cpus}", ""]
  lines.append(report.markdown_table(
      rows, ["cell", "hidden", "seeds", "ms_1", "ms_vmap", "x_vmap", "x_vmap_rounds", "ms_map",
             "x_map", "x_map_rounds", "auto", "x_auto", "compile_1", "compile_vmap",
             "compile_map"],
      ["cell", "hidden", "S", "ms/step 1 seed", "ms/step vmap", "x vmap", "x vmap, rounds",
       "ms/step map", "x map", "x map, rounds", "auto", "x auto", "compile s 1",
       "compile s vmap", "compile s map"]))
  worst = max((r["x_auto"] / r["seeds"] for r in rows), default=float("nan"))
  lines += ["", f"Worst `auto` row: {worst:.2f} of S separate runs "
            f"({'within' if worst <= 1.0 else 'over'} the S x of separate runs).", ""]
  return "\n".join(lines)


def _pin() -> str:
  """Pins this process as `sweep.worker_cpus` pins a study's first worker; says how."""
  cpus = sweep.worker_cpus(_WORKERS.value)[0] if _WORKERS.value > 1 else None
  if cpus is None:
    return ("not pinned (the whole machine)" if _WORKERS.value <= 1 else
            f"not pinned: {_WORKERS.value} workers outnumber the CPUs, or this OS cannot pin")
  os.sched_setaffinity(0, cpus)
  return (f"pinned to CPU {','.join(map(str, sorted(cpus)))}, as one of the {_WORKERS.value} "
          f"workers of a study with --parallel={_WORKERS.value} (`--workers`)")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _WORKERS.value < 1:
    raise app.UsageError(f"--workers={_WORKERS.value}: give 1 or more")
  run_files.check_writable_dir(_RESULTS.value, "--results_dir")  # before the timing
  cpus = _pin()
  config = memory_grid.point_config(_CONFIG.value)
  rows = measure(config)
  command = "python -m experiments.seeds_speedup " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  path = os.path.join(_RESULTS.value, REPORT_FILE)
  run_folder.atomic_write(path, markdown(rows, config, command, cpus))
  print(path)


if __name__ == "__main__":
  cli.run(main)
