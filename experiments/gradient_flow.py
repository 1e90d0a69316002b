r"""Gradient flow through time: ||dLoss/dh_t|| for every step t, plotted on a log scale.

  # vanilla, LSTM, GRU at initialisation and after a short training run (in --train_dir):
  python -m experiments.gradient_flow --config=configs/adding.py --config.task.length=100
  # one trained run, at initialisation (same config) and at its latest checkpoint:
  python -m experiments.gradient_flow --workdir=/tmp/adding
  # the exploding case: vanilla RNN with recurrent weights scaled up, with and without clipping:
  python -m experiments.gradient_flow --config=configs/adding.py --exploding
  # the committed pictures:
  python -m experiments.gradient_flow --config=configs/adding.py --config.task.length=100 \
      --results_dir=experiments/results

The numbers are saved as JSON next to the training runs (gradient_flow.json,
gradient_flow_exploding.json); the plot is drawn from that file, into the trained run's --workdir
or --train_dir unless --results_dir or --out says otherwise (`rnnlab.studies.gradient_flow.run`).
"""

import json
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.studies import gradient_flow

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run to diagnose (instead of --config).")
_CELLS = flags.DEFINE_list("cells", ["vanilla", "lstm", "gru"], "Cells to compare (--config).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "Steps of the short training runs.")
_TRAIN_DIR = flags.DEFINE_string("train_dir", "/tmp/rnnlab_gradient_flow",
                                 "Workdirs of the short training runs and the JSON data.")
_EXAMPLES = flags.DEFINE_integer("num_examples", 64, "Examples in the diagnostic batch.")
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "Directory of the plot (default: --workdir, or --train_dir); "
    "experiments/results regenerates the committed pictures.")
_OUT = flags.DEFINE_string("out", None, "PNG to write (overrides --results_dir).")
_TRAINING = cli.define_launch_flags("short runs (--config)")
_EXPLODING = flags.DEFINE_bool("exploding", False, "The exploding case (vanilla RNN, scales).")
_SCALES = flags.DEFINE_list("scales", ["1.0", "1.5", "2.0", "3.0"],
                            "--exploding: recurrent scales whose norms at init are drawn.")
_TRAIN_SCALE = flags.DEFINE_float("train_scale", 2.0,
                                  "--exploding: recurrent scale of the clip/no-clip runs.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if (_CONFIG.value is None) == (_WORKDIR.value is None):
    raise ConfigError("give exactly one of --config (train briefly) or --workdir (a trained run)")
  command = "python -m experiments.gradient_flow " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  try:
    plot = gradient_flow.run(
        _CONFIG.value, _WORKDIR.value, exploding=_EXPLODING.value, cell_names=_CELLS.value,
        train_steps=_TRAIN_STEPS.value, train_dir=_TRAIN_DIR.value, num_examples=_EXAMPLES.value,
        scales=[float(s) for s in _SCALES.value], train_scale=_TRAIN_SCALE.value,
        results_dir=_RESULTS_DIR.value, out=_OUT.value, command=command, training=_TRAINING())
  except RnnlabError as e:
    raise cli.as_flags(e, cli.LAUNCH_FLAGS) from None
  if plot is None:
    print(f"Some short runs in {_TRAIN_DIR.value} are not finished (other shards, or Slurm jobs: "
          f"logs in {_TRAIN_DIR.value}/submitit); run the same command again when they are done "
          "to draw the plot.")
    return
  print(json.dumps({"plot": plot}))


if __name__ == "__main__":
  cli.run(main)
