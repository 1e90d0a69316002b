r"""Gradient flow through time: ||dLoss/dh_t|| for every step t, plotted on a log scale.

  # vanilla, LSTM, GRU at initialisation and after a short training run (in --train_dir):
  python -m experiments.gradient_flow --config=configs/adding.py --config.task.length=100
  # one trained run, at initialisation (same config) and at its latest checkpoint:
  python -m experiments.gradient_flow --workdir=/tmp/adding --out=/tmp/adding/gradient_flow.png
  # the exploding case: vanilla RNN with recurrent weights scaled up, with and without clipping:
  python -m experiments.gradient_flow --config=configs/adding.py --exploding

The numbers are saved as JSON next to the training runs (gradient_flow.json,
gradient_flow_exploding.json); the plot is drawn from that file.
"""

import json
import os
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.analysis import gradient_flow
from rnnlab.errors import ConfigError
from rnnlab.studies import plots

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run to diagnose (instead of --config).")
_CELLS = flags.DEFINE_list("cells", ["vanilla", "lstm", "gru"], "Cells to compare (--config).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "Steps of the short training runs.")
_TRAIN_DIR = flags.DEFINE_string("train_dir", "/tmp/rnnlab_gradient_flow",
                                 "Workdirs of the short training runs and the JSON data.")
_EXAMPLES = flags.DEFINE_integer("num_examples", 64, "Examples in the diagnostic batch.")
_OUT = flags.DEFINE_string("out", None, "PNG to write (default: experiments/results/"
                           "gradient_flow.png, or gradient_flow_exploding.png with --exploding).")
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
  results = "experiments/results"
  command = "python -m experiments.gradient_flow " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  if _WORKDIR.value is not None:
    data = gradient_flow.gradient_flow_of_workdir(_WORKDIR.value, _EXAMPLES.value, command)
    out = _OUT.value or os.path.join(results, "gradient_flow.png")
    plots.gradient_flow(data, out)
  elif _EXPLODING.value:
    data = gradient_flow.exploding_study(_CONFIG.value, [float(s) for s in _SCALES.value],
                                       _TRAIN_SCALE.value, _TRAIN_STEPS.value, _TRAIN_DIR.value,
                                       _EXAMPLES.value, command)
    out = _OUT.value or os.path.join(results, "gradient_flow_exploding.png")
    plots.exploding(data, out)
  else:
    data = gradient_flow.gradient_flow_study(_CONFIG.value, _CELLS.value, _TRAIN_DIR.value,
                                           _TRAIN_STEPS.value, _EXAMPLES.value, command)
    out = _OUT.value or os.path.join(results, "gradient_flow.png")
    plots.gradient_flow(data, out)
  print(json.dumps({"plot": out}))


if __name__ == "__main__":
  cli.run(main)
