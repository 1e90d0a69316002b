"""rnnlab: recurrent networks as pure JAX functions, for measuring memory."""

from rnnlab import cells, recurrent

__all__ = ["cells", "recurrent"]
