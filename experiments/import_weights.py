r"""Imports weights trained elsewhere into a new rnnlab workdir (a step-0 checkpoint).

  python -m experiments.import_weights --from=torch --checkpoint=model.pt \
      --config=configs/copy.py --workdir=/tmp/imported [--config.model.num_layers=2 ...]
  python -m experiments.evaluate --workdir=/tmp/imported
  python -m experiments.train --config=configs/copy.py --workdir=/tmp/imported   # fine-tunes

--from=torch reads a state_dict (embed.weight, rnn.*, readout.weight/bias), --from=flax a
.msgpack/.npz of RNNModel params, --from=keras a .keras model; see rnnlab/interop/peer_files.py
for the names read. Prints one JSON line: what was imported and what was initialised from the seed.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.errors import RnnlabError
from rnnlab.interop import importing

_FROM = flags.DEFINE_enum("from", None, list(importing.SOURCES),
                          "Where the weights come from.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "The file holding the weights.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py) of the "
                                          "model the weights fit.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "New workdir to write (config and checkpoint).")
_RNN_PREFIX = flags.DEFINE_string("rnn_prefix", None, "torch: state_dict prefix of the "
                                  "recurrent module (default 'rnn.', or none for a bare RNN).")
flags.mark_flags_as_required(["from", "checkpoint", "config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    report = importing.import_weights(_FROM.value, _CHECKPOINT.value, _CONFIG.value,
                                      _WORKDIR.value, rnn_prefix=_RNN_PREFIX.value)
  except RnnlabError as e:
    raise cli.as_flags(e, {"source": "from", "path": "checkpoint", "rnn_prefix": "rnn_prefix"}
                       ) from None
  print(json.dumps(report))


if __name__ == "__main__":
  cli.run(main)
