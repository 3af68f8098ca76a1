"""The wheel holds every klm package (pyproject.toml lists them by hand)."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.smoke
def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "klm").rglob("__init__.py")}
    found |= {"klm.cli"} if (REPO / "cli" / "__init__.py").exists() else set()
    missing = sorted(found - listed)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(listed - found)
    assert not stale, f"pyproject.toml lists packages that do not exist: {stale}"
    assert config["package-dir"]["klm.cli"] == "cli"
