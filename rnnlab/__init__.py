"""rnnlab: recurrent networks as pure JAX functions, for measuring memory."""

from rnnlab.core import cells, recurrent

__all__ = ["cells", "recurrent"]
