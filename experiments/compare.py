r"""The comparison study: vanilla/LSTM/GRU x uni/bidirectional x copy/adding x lengths.

Also the long-delay study (configs/horizon.py: chrono and IRNN beside the classic and the
parallel-in-time cells at copy T up to 1000, adding T up to 1000), which writes horizon.md.

  python -m experiments.compare --config=configs/compare.py --workdir=/tmp/compare
  python -m experiments.compare --config=configs/compare.py:quick --workdir=/tmp/cq \
      --results_dir=/tmp/cq/results                           # a tiny grid, under a minute
  python -m experiments.compare --config=configs/compare.py --workdir=/tmp/compare \
      --from_workdirs                                         # report only, no training
  python -m experiments.compare --config=configs/compare.py --seeds_speedup \
      --config.model.cell=lstm --config.task.name=copy --config.task.length=50

Each grid point trains in WORKDIR/<point> (finished points are skipped, interrupted ones resume)
and the report goes to --results_dir: compare.md, compare.csv, compare_*.png. A subset of the
grid is run by overriding the grid lists, e.g. --config.compare.directions=uni.
With --seeds_speedup, instead times train.num_seeds=--num_seeds in one program against one seed
at each --hidden_sizes and writes seeds_speedup.md to --results_dir.
"""

import os
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.studies import compare, report
from rnnlab.training import run_folder

_CONFIG = config_flags.DEFINE_config_file("config", "configs/compare.py",
                                          "configs/compare.py or configs/compare.py:quick.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Base directory: one workdir per grid point.")
_RESULTS = flags.DEFINE_string("results_dir", "experiments/results",
                               "Where compare.md, compare.csv and the plots go.")
_FROM_WORKDIRS = flags.DEFINE_bool("from_workdirs", False,
                                   "Rebuild the report from existing workdirs; never train.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Split the grid points into this many shards.")
_SHARD_INDEX = flags.DEFINE_integer("shard_index", 0, "Train the points of this shard only.")
_SPEEDUP = flags.DEFINE_bool("seeds_speedup", False,
                             "Measure the seeds-in-one-program speed-up instead of the grid.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 8, "--seeds_speedup: seeds in one program.")
_HIDDEN = flags.DEFINE_list("hidden_sizes", ["32", "256"], "--seeds_speedup: hidden sizes.")
_STEPS = flags.DEFINE_integer("timed_steps", 20, "--seeds_speedup: timed steps per measurement.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "--seeds_speedup: alternating repeats.")


def _command() -> str:
  return "python -m experiments.compare " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if _SPEEDUP.value:
    point = compare.point_config(config)
    hidden = [int(h) for h in _HIDDEN.value]
    results = compare.measure_seeds_speedup(point, _NUM_SEEDS.value, hidden, _STEPS.value,
                                            _REPEATS.value)
    run_folder.atomic_write(os.path.join(_RESULTS.value, "seeds_speedup.md"),
                      compare.seeds_speedup_markdown(results, point, _command(), _STEPS.value,
                                                     _REPEATS.value))
    return
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  compare.run(config, _WORKDIR.value, _RESULTS.value, _command(),
              from_workdirs=_FROM_WORKDIRS.value,
              default_grid=compare.default_grid(config),  # to name a declared subset
              num_shards=_NUM_SHARDS.value, shard_index=_SHARD_INDEX.value)
  print(os.path.join(_RESULTS.value, compare.report_files(compare.report_name(config))["md"]))


if __name__ == "__main__":
  cli.run(main)
