"""Errors a user can fix: entry points print their message and exit non-zero, with no traceback."""


class RnnlabError(Exception):
  """Base of the errors caused by input (config, flags, files, workdir), not by a bug."""


class ConfigError(RnnlabError):
  """A config value is wrong; the message names the key and what is allowed."""


class CheckpointError(RnnlabError):
  """A checkpoint is missing, incomplete or does not match the config."""


class NonFiniteError(RnnlabError):
  """The loss or gradients became NaN/inf; the message names the step and the last good checkpoint."""

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step
