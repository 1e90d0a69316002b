"""Adding problem (Le, Jaitly & Hinton 2015 form): sum of the two marked values.

  python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task.name = "adding"
  config.task.length = 100
  config.train.num_steps = 4000
  return config
