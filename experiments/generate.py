r"""Samples text from a trained character-level language model (task charlm).

  python -m experiments.generate --workdir=/tmp/charlm --prompt="The blue ship" --length=200 \
      --temperature=0.8 --plot=/tmp/next_char.png

Reloads the run's checkpoint, reads the prompt one character at a time from a cleared state,
then samples --length characters, feeding each back (the hidden state is carried throughout).
Prints the prompt and its continuation; --plot writes the next-character probability bar chart
after the prompt; --validation_bpc also prints the bits per character of the whole validation
split read in one pass.
"""

import sys

from absl import app, flags

from experiments import cli
from rnnlab.analysis import sampling
from rnnlab.errors import RnnlabError

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a charlm training run.")
_PROMPT = flags.DEFINE_string("prompt", "The ", "Text to read before sampling.")
_LENGTH = flags.DEFINE_integer("length", 200, "Characters to sample.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = greedy.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BEST = flags.DEFINE_bool("best", False, "Restore the best checkpoint instead of the latest.")
_PLOT = flags.DEFINE_string("plot", None, "Write the next-character bar chart to this PNG.")
_TOP_K = flags.DEFINE_integer("top_k", 10, "Characters shown in the bar chart.")
_VALIDATION_BPC = flags.DEFINE_bool("validation_bpc", False,
                                    "Also print the bpc of the whole validation split.")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    result = sampling.generate_from_workdir(
        _WORKDIR.value, _PROMPT.value, _LENGTH.value, _TEMPERATURE.value, _SEED.value,
        _BEST.value, None, _TOP_K.value, _VALIDATION_BPC.value)
  except RnnlabError as e:
    raise cli.as_flags(e, ("prompt", "length", "temperature", "top_k")) from None
  print(result.text, flush=True)
  if result.validation_bpc is not None:
    print(f"validation bpc (whole split, one pass): {result.validation_bpc:.4f}", file=sys.stderr)
  if _PLOT.value:  # after the text, so a bad --plot path loses nothing that was generated
    sampling.write_next_char_chart(result, _PLOT.value, _TOP_K.value)


if __name__ == "__main__":
  cli.run(main)
