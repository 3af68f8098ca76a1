"""The module paths of `klm.data` before it was grouped into subpackages, kept for one release.

`import klm.data.datasets` (or `from klm.data.prepare import format_summary`)
still works: it gives the module at the new path (`klm.data.downloads`,
`klm.data.prepared.writer`) and emits a `DeprecationWarning` naming it. The
old paths will be removed in the next release; import from `OLD_PATHS`'s
values instead, or use the names `klm.data` exports.

How: `install()` (called by `klm/data/__init__.py`) puts an import finder for
exactly the paths in `OLD_PATHS` at the end of `sys.meta_path`, so it only
answers for names no file provides. Its loader imports the new module and
puts that very module in `sys.modules` under the old name (one module object:
patching it through either name patches both). Three old paths share their
name with a function of `klm.data` (`prepare`, `lm_dataset`,
`classification_dataset`), and `klm.data.tokenizers.train_tokenizer` with
`train_tokenizer`: the import system binds an imported submodule on its
package, so the packages get a module class that keeps the function in
place. `klm.data.sources` and the others also still work as attributes of
`klm.data` (imported on first use, with the same warning).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

OLD_PATHS = {
    "klm.data.classification_data": "klm.data.classification.encoded_splits",
    "klm.data.classification_dataset": "klm.data.classification.batches",
    "klm.data.cleaning_config": "klm.data.text.cleaning_config",
    "klm.data.corpus": "klm.data.lm.corpus",
    "klm.data.datasets": "klm.data.downloads",
    "klm.data.label_vocabulary": "klm.data.classification.label_vocabulary",
    "klm.data.labelled_texts": "klm.data.classification.labelled_files",
    "klm.data.lm_dataset": "klm.data.lm.batches",
    "klm.data.lm_inputs": "klm.data.lm.model_inputs",
    "klm.data.pipeline": "klm.data.text.clean_and_tokenize",
    "klm.data.prepare": "klm.data.prepared.writer",
    "klm.data.prepare_config": "klm.data.prepared.config",
    "klm.data.prepared_data": "klm.data.prepared.reader",
    "klm.data.prepared_split": "klm.data.prepared.shards",
    "klm.data.privacy": "klm.data.text.privacy",
    "klm.data.privacy_cases": "klm.data.text.privacy_cases",
    "klm.data.progress": "klm.data.text.progress",
    "klm.data.sources": "klm.data.text.sources",
    "klm.data.stop_words": "klm.data.text.stop_words",
    "klm.data.text_cleaner": "klm.data.text.cleaner",
    "klm.data.tokenizers.train_tokenizer": "klm.data.tokenizers.training",
}

# Frames a warning should not point at: importlib's, this file's, and
# klm/__init__.py's import hook (which wraps module execution).
_SKIPPED_FILES = (__file__, sys.modules["klm"].__file__)


def _is_import_machinery(frame):
    filename = frame.f_code.co_filename
    return filename in _SKIPPED_FILES or "importlib" in filename


def _importer_stacklevel():
    """The `stacklevel` that points a warning issued by our caller at the code doing the import."""
    # `warnings.warn` counts frames from its caller and itself skips the
    # importlib bootstrap frames; count the same way, skipping ours too.
    frame, level = sys._getframe(2), 2
    while frame is not None and _is_import_machinery(frame):
        if "_bootstrap" not in frame.f_code.co_filename:  # `warn` skips those itself
            level += 1
        frame = frame.f_back
    return level


def _warn(old, new):
    warnings.warn(
        f"{old} moved to {new}; import it from there (or the name from klm.data). "
        f"The old path will be removed in the next release.",
        DeprecationWarning,
        stacklevel=_importer_stacklevel(),
    )


class _OldPathLoader(importlib.abc.Loader):
    def __init__(self, new):
        self.new = new

    def create_module(self, spec):
        return None  # a placeholder, replaced in sys.modules by exec_module

    def exec_module(self, module):
        _warn(module.__name__, self.new)
        # The import system returns whatever sys.modules holds after this.
        sys.modules[module.__name__] = importlib.import_module(self.new)


class _OldPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        new = OLD_PATHS.get(name)
        if new is None:
            return None
        return importlib.util.spec_from_loader(name, _OldPathLoader(new))


class _PackageWithOldPaths(types.ModuleType):
    """A package module that resolves old child paths as attributes and keeps its functions.

    When an old path such as `klm.data.prepare` is imported, the import system
    binds the module on its package; `klm.data.prepare` must stay the function.
    """

    def __getattr__(self, name):
        if f"{self.__name__}.{name}" not in OLD_PATHS:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return importlib.import_module(f"{self.__name__}.{name}")

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and f"{self.__name__}.{name}" in OLD_PATHS:
            current = self.__dict__.get(name)
            if current is not None and not isinstance(current, types.ModuleType):
                return
        super().__setattr__(name, value)


def install():
    """Makes the old paths importable (once); call after `klm.data` has imported its subpackages."""
    if not any(isinstance(finder, _OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())
    for package in sorted({old.rpartition(".")[0] for old in OLD_PATHS}):
        module = sys.modules.get(package)
        if module is not None and type(module) is types.ModuleType:
            module.__class__ = _PackageWithOldPaths
