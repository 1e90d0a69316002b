"""Copy task (Arjovsky et al. 2016 form), delay T=20: the default experiment.

  python -m experiments.train --config=configs/copy.py --workdir=/tmp/rnnlab/copy

An LSTM with 256 units, Adam 3e-3, batch 64, global-norm clipping 1.0. Measured on this
project's 2-core machine (shared with other jobs): hidden 128 with Adam 3e-3 reached only 83%
recall after 8,000 steps, Adam 1e-2 78%, hidden 128 with batch 128 and Adam 5e-3 96%, and
warmup-cosine did no better at hidden 128; hidden 256 passed 99% recall at step 9,500, 402 s (see
experiments/results/copy_default.md).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task.name = "copy"
  config.task.length = 20
  config.model.hidden_size = 256
  config.train.learning_rate = 3e-3
  config.train.batch_size = 64
  config.train.num_steps = 12000
  config.train.log_every = 250
  config.train.eval_every = 250
  config.train.checkpoint_every = 2000
  return config
