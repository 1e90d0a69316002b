r"""The memory study: cells x directions x tasks x lengths, every point a resumable sweep run.

  python -m experiments.compare --config=configs/compare.py --workdir=/tmp/compare
  python -m experiments.compare --config=configs/quickstart.py --workdir=/tmp/quickstart
  python -m experiments.compare --config=configs/horizon.py --workdir=/tmp/horizon
  python -m experiments.compare --config=configs/compare.py --workdir=/tmp/compare \
      --from_workdirs                                         # report only, no training

Each grid point trains in WORKDIR/<point> (finished points are skipped, interrupted ones resume),
in --parallel worker processes (default: one per CPU core), or as submitit jobs with
--launcher=local or --launcher=slurm (the --slurm_* flags set their resources). The report
(NAME.md, NAME.csv, NAME_*.png, NAME from config.compare.name) goes to --results_dir, by
default WORKDIR itself; regenerating the committed report is the explicit
`--results_dir=experiments/results`. A --results_dir other than WORKDIR also gets NAME_runs/,
the study's run records (`rnnlab.studies.records`): the report is rebuilt from them with
--workdir=NAME_runs --from_workdirs, and a copy of them continues the study elsewhere. A subset of
the grid is run by overriding the grid lists, e.g. --config.compare.directions=uni.
"""

import importlib.util
import os
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.studies import memory_grid, memory_study

_CONFIG = config_flags.DEFINE_config_file("config", "configs/compare.py",
                                          "configs/compare.py, configs/horizon.py, "
                                          "configs/quickstart.py or a variant FILE:variant.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Base directory: one workdir per grid point.")
_RESULTS = flags.DEFINE_string("results_dir", None,
                               "Where NAME.md, NAME.csv and the plots go (default: --workdir).")
_FROM_WORKDIRS = flags.DEFINE_bool("from_workdirs", False,
                                   "Rebuild the report from existing workdirs; never train.")
_TRAINING = cli.define_launch_flags("grid points")
flags.mark_flags_as_required(["workdir"])


def _command() -> str:
  return "python -m experiments.compare " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _default_grid() -> dict:
  """The `compare` section of the config file's default variant: the full grid, so the report
  can name the points a run with overridden grid lists left out."""
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  if not path.endswith(".py") and ".py:" in path:
    path = path[:path.rindex(".py:") + 3]  # FILE.py:variant -> FILE.py
  spec = importlib.util.spec_from_file_location("_study_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config().compare.to_dict()


_COMMITTED = os.path.join(os.path.dirname(os.path.realpath(__file__)), "results")


def _committed_part(path: str) -> str | None:
  """`path` relative to the committed results (experiments/results), or None if outside."""
  rel = os.path.relpath(os.path.realpath(path), _COMMITTED)
  return None if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def _check_not_committed(workdir: str, results_dir: str) -> None:
  """The committed run records (experiments/results/NAME_runs) are read, never written: a study
  trains in a copy of them, and their report is rebuilt into a --results_dir outside them."""
  if _committed_part(workdir) is not None and not _FROM_WORKDIRS.value:
    raise RnnlabError(f"--workdir={workdir} is inside the committed results ({_COMMITTED}), "
                      "and training there would change them: copy it to a workdir first "
                      f"(cp -r {workdir} /tmp/rnnlab_compare) and pass that --workdir")
  part = _committed_part(results_dir)
  if part is not None and part.split(os.sep)[0].endswith("_runs"):
    raise RnnlabError(f"the report would be written into {results_dir}, inside the committed run "
                      "records: pass --results_dir=DIR elsewhere")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if "compare" not in config:
    raise ConfigError(f"{config_flags.get_config_filename(flags.FLAGS['config'])} has no "
                      "`compare` section (the grid); use configs/compare.py, configs/horizon.py "
                      "or configs/quickstart.py")
  results_dir = _RESULTS.value or _WORKDIR.value
  _check_not_committed(_WORKDIR.value, results_dir)
  try:
    rows = memory_study.run(config, _WORKDIR.value, results_dir, _command(),
                            from_workdirs=_FROM_WORKDIRS.value, default_grid=_default_grid(),
                            training=_TRAINING())
  except RnnlabError as e:
    raise cli.as_flags(e, cli.LAUNCH_FLAGS) from None
  name = memory_grid.report_name(config)
  print(memory_study.summary_text(rows))
  print(os.path.join(results_dir, memory_grid.report_files(name)["md"]))
  if _FROM_WORKDIRS.value or not any(r["status"] in ("not run", "partial") for r in rows):
    return
  if config.compare.get("skip_past_horizon"):
    print("This study trains each task's lengths shortest first (config.compare."
          "skip_past_horizon), so its longer lengths wait for the shorter ones: once this run's "
          "Slurm jobs or the other shards are done, run this same command again to train the "
          "next lengths (finished points are skipped).")
  elif flags.FLAGS.launcher == "slurm":
    print("The report covers the points finished so far; when the Slurm jobs are done, "
          f"rebuild it with:\n  {_command()} --from_workdirs")


if __name__ == "__main__":
  cli.run(main)
