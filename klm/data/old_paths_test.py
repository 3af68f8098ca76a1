import importlib
import pkgutil
import sys
import types

import pytest

import klm.data
from klm.data.old_paths import OLD_PATHS


def forget(monkeypatch, name):
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_old_path_gives_the_new_module_with_a_deprecation_warning(monkeypatch):
    forget(monkeypatch, "klm.data.datasets")
    with pytest.warns(DeprecationWarning, match=r"klm\.data\.datasets moved to klm\.data\.downloads") as record:
        import klm.data.datasets as datasets
    assert datasets is sys.modules["klm.data.downloads"]
    assert datasets.get_dataset is klm.data.get_dataset
    assert record[0].filename == __file__  # points at the importing line


def test_from_old_path_import_name_keeps_the_function_on_the_package(monkeypatch):
    for name in ("klm.data.lm_dataset", "klm.data.prepare"):
        forget(monkeypatch, name)
    with pytest.warns(DeprecationWarning, match=r"klm\.data\.lm\.batches"):
        from klm.data.lm_dataset import lm_dataset
    with pytest.warns(DeprecationWarning, match=r"klm\.data\.prepared\.writer"):
        from klm.data.prepare import format_summary
    assert lm_dataset is klm.data.lm_dataset
    assert callable(format_summary)
    # The import system binds an imported submodule on its package; the functions stay.
    assert isinstance(klm.data.lm_dataset, types.FunctionType)
    assert isinstance(klm.data.prepare, types.FunctionType)
    assert isinstance(klm.data.tokenizers.train_tokenizer, types.FunctionType)


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_every_old_path_imports(monkeypatch, old):
    forget(monkeypatch, old)
    with pytest.warns(DeprecationWarning, match=OLD_PATHS[old].replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(OLD_PATHS[old])


def test_old_module_attributes_of_the_package(monkeypatch):
    forget(monkeypatch, "klm.data.sources")
    monkeypatch.delattr(klm.data, "sources", raising=False)
    with pytest.warns(DeprecationWarning, match=r"klm\.data\.text\.sources"):
        sources = klm.data.sources
    assert sources is sys.modules["klm.data.text.sources"]
    with pytest.raises(AttributeError):
        klm.data.no_such_module  # noqa: B018


def test_no_function_of_klm_data_shares_a_name_with_a_module():
    packages = {"klm.data": klm.data, "klm.data.tokenizers": klm.data.tokenizers}
    modules = [info.name for info in pkgutil.walk_packages(klm.data.__path__, "klm.data.")]
    assert "klm.data.text.sources" in modules
    for module in modules:
        short = module.rpartition(".")[2]
        for package in packages.values():
            value = package.__dict__.get(short)
            assert value is None or isinstance(value, types.ModuleType), (package.__name__, short)
    for old in OLD_PATHS:  # no old path is a file any more
        assert old not in modules
