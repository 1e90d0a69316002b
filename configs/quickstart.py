r"""The first command: vanilla RNN, LSTM and GRU, uni- and bidirectional, on the adding problem
at T=50, where the gated cells solve (MSE < 0.01) and the vanilla RNN stays at the baseline.

  python -m experiments.compare --config=configs/quickstart.py --workdir=/tmp/rnnlab/quickstart

Six points, 3 seeds each, in two worker processes; each point stops once its seeds are solved.
The measured time is in experiments/results/quickstart.md.
"""

import ml_collections

from configs import compare


def get_config() -> ml_collections.ConfigDict:
  config = compare.get_config()
  config.model.hidden_size = 64
  config.train.batch_size = 32
  # experiments/results/compare.md (2026-11, this shape): LSTM solved adding T=50 at 1,000-1,500
  # steps, GRU at 500; the vanilla RNN stayed at the baseline through 2,000.
  config.train.num_steps = 1600
  config.train.learning_rate = 3e-3
  config.train.log_every = 100
  config.train.eval_every = 100
  config.train.checkpoint_every = 500
  config.compare.name = "quickstart"
  config.compare.title = "Quick start: which cells remember the two marked numbers (adding, T=50)"
  config.compare.tasks = "adding"
  config.compare.adding_lengths = "50"
  config.compare.overrides = ml_collections.ConfigDict()
  return config
