"""Copy task (Arjovsky et al. 2016 form), delay T=20: the default experiment.

  python -m experiments.train --config=configs/copy.py --workdir=/tmp/rnnlab/copy

An LSTM with 256 units, Adam 3e-3, batch 64, global-norm clipping 1.0. The committed run and the
other settings tried while choosing these: experiments/results/copy_default.md.
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
