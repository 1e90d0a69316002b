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
