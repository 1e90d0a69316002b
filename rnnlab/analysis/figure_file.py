"""The one way rnnlab writes a figure to a file: drawn in memory, then written whole
(`run_files.atomic_write`), so a kill or an unwritable path never leaves a partial image; an
unwritable path is one RnnlabError naming it, an unknown format (the extension) a ValueError."""

from __future__ import annotations

import io
import os
from typing import Any

from rnnlab.training import run_files


def save(fig: Any, path: str, dpi: int, **savefig_kwargs: Any) -> None:
  """Writes matplotlib figure `fig` to `path` in the format its extension names, and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel  (fig made it cheap)

  buffer = io.BytesIO()
  try:
    fig.savefig(buffer, dpi=dpi, format=os.path.splitext(path)[1][1:] or None, **savefig_kwargs)
  finally:
    plt.close(fig)
  run_files.atomic_write(path, buffer.getvalue())
