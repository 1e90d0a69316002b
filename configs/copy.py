"""Copy task (Arjovsky et al. 2016 form): an LSTM that solves delay T=20 in a few minutes on CPU.

  python -m experiments.train --config=configs/copy.py --workdir=/tmp/copy
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task.name = "copy"
  config.task.length = 20
  return config
