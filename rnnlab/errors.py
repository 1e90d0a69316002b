"""Errors a user can fix: entry points print their message and exit non-zero, with no traceback."""


class RnnlabError(Exception):
  """Base of the errors caused by input (config, flags, files, workdir), not by a bug.

  An error pickles (from a study's worker process to the study) and copies with its message and
  attributes whatever its subclass's `__init__` takes.
  """

  def __reduce__(self):
    return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type, args: tuple, state: dict) -> RnnlabError:
  error = Exception.__new__(cls)
  error.args = args
  error.__dict__.update(state)
  return error


class ConfigError(RnnlabError):
  """A config value is wrong; the message names the key and what is allowed."""


class CheckpointError(RnnlabError):
  """A checkpoint is missing, incomplete or does not match the config."""


class NonFiniteError(RnnlabError):
  """The loss or gradients became NaN/inf; the message names the step and the last good checkpoint."""

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step


class Interrupted(RnnlabError):
  """Training was asked to stop (Ctrl-C, or SIGTERM from `kill` or a cluster's scheduler) and
  stopped at a step boundary, its checkpoint of that step saved: a stop, not a failure. Entry
  points print the message (no "error:") and exit with `exit_code`.

  Attributes:
    step: the step a single run stopped at (None for a study's stop of several runs).
    exit_code: 128 + the signal's number, as the shell reports a process the signal ended
      (130 for Ctrl-C, 143 for SIGTERM).
  """

  def __init__(self, message: str, step: int | None = None, exit_code: int = 130):
    super().__init__(message)
    self.step = step
    self.exit_code = exit_code
