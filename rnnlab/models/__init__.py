"""flax.linen Modules that hold parameters and call `rnnlab.core`: the recurrent encoder and its
readouts (`encoder`), the encoder-decoder (`seq2seq`), and `build_model`, the one place that
builds the model a task's `ModelSpec` asks for."""

from rnnlab.models.build import build_model
from rnnlab.models.encoder import (
                                   RecurrentEncoder,
                                   RNNModel,
                                   cell_options_from_config,
                                   encoder_from_config,
                                   last_real_step,
                                   make_cell,
                                   norm_module,
)

__all__ = ["RNNModel", "RecurrentEncoder", "build_model", "cell_options_from_config",
           "encoder_from_config", "last_real_step", "make_cell", "norm_module"]
