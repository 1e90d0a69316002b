"""The package's wings: the import-linter contract holds, and rnnlab's top level is only
`__init__.py` and `errors.py`."""

import os
import shutil
import subprocess

from tests.conftest import ROOT


def test_import_layers_contract_is_kept():
  lint = shutil.which("lint-imports")
  assert lint, "lint-imports is missing: pip install -r tests/requirements.txt"
  result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:]
  assert "0 broken" in result.stdout


def test_top_level_holds_only_init_and_errors():
  names = sorted(n for n in os.listdir(os.path.join(ROOT, "rnnlab")) if n.endswith(".py"))
  assert names == ["__init__.py", "errors.py"]


def test_no_import_cycle_among_rnnlab_modules():
  # A cycle exists exactly when some module's direct import leads back to it.
  import grimp
  graph = grimp.build_graph("rnnlab")
  cycles = []
  for module in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
      chain = graph.find_shortest_chain(importer=imported, imported=module)
      if chain:
        cycles.append(" -> ".join((module,) + tuple(chain)))
  assert not cycles, "import cycles:\n" + "\n".join(cycles)
