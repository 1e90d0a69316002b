"""The base config of every experiment: rnnlab's defaults (rnnlab/training/defaults.py lists
every key with its meaning). Each configs/*.py starts from it and overrides."""

from rnnlab.training.defaults import get_config

__all__ = ["get_config"]
