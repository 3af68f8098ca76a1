"""Optional extras stay optional: without any one of them every command's `--help` works, and the
command that needs it exits 2 naming `pip install klm[extra]`.

Each check runs in a fresh interpreter in which the package cannot be imported
(`sys.modules[name] = None` makes the import system raise ImportError, as when
it is not installed); klm's code runs unchanged.
"""

import subprocess
import sys

import pytest
from import_graph_test import DEFERRED_PACKAGES

# Quick tier: a missing optional package broke CI once, after a refactor moved an import.
pytestmark = pytest.mark.smoke

# The importable name of every package that only an optional extra brings (pyproject.toml): the
# packages klm defers importing, less its required dependencies.
OPTIONAL_MODULES = sorted(DEFERRED_PACKAGES - {"keras", "keras_hub", "tensorflow", "tensorflow_text"})


def run_without(modules, code):
    blocked = "".join(f"sys.modules[{name!r}] = None; " for name in modules)
    return subprocess.run(
        [sys.executable, "-c", "import sys; " + blocked + code], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("module", OPTIONAL_MODULES)
def test_every_command_helps_without(module):
    code = (
        "from click.testing import CliRunner; from klm.cli.main import main; "
        "names = sorted(main.list_commands(None)); "
        "bad = [(n, r.output[-300:] or repr(r.exception)) for n in names "
        "for r in [CliRunner().invoke(main, [n, '--help'])] if r.exit_code != 0]; "
        "assert not bad, bad; print(len(names))"
    )
    proc = run_without([module], code)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) >= 8


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "pydantic"])
def test_serve_without_its_extra_names_it(tmp_path, module):
    code = (
        "from click.testing import CliRunner; from klm.cli.main import main; "
        f"r = CliRunner().invoke(main, ['serve', {str(tmp_path)!r}, '--port', '0']); "
        "print(r.output); sys.exit(r.exit_code)"
    )
    proc = run_without([module], code)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "pip install 'klm[serve]'" in proc.stdout, proc.stdout[-2000:]
