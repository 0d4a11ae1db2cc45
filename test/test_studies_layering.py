"""usad2/studies/ holds the drivers of one recipe's research studies: the core never imports it.

The check reads every module's import statements (top level and inside functions), so a lazy
import counts too; a study may import the core, never the other way round.
"""
import ast
import os

import usad2

PACKAGE = os.path.dirname(os.path.abspath(usad2.__file__))


def _imported_modules(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # `from usad2 import studies`
                yield node.lineno, f"{node.module}.{alias.name}"


def _core_modules():
    for directory, subdirs, files in os.walk(PACKAGE):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__"
                            and os.path.join(directory, d) != os.path.join(PACKAGE, "studies"))
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def test_core_never_imports_studies():
    offenders = []
    for path in _core_modules():
        for line, module in _imported_modules(path):
            if module == "usad2.studies" or module.startswith("usad2.studies."):
                offenders.append(f"{os.path.relpath(path, PACKAGE)}:{line} imports {module}")
    assert not offenders, "the core imports usad2.studies:\n" + "\n".join(offenders)
    assert sum(1 for _ in _core_modules()) > 50  # the walk really saw the package


def test_studies_run_as_modules():
    studies = os.path.join(PACKAGE, "studies")
    # `_name.py`: a piece of one study (e.g. the ablation's table), not a study of its own
    names = sorted(n[:-3] for n in os.listdir(studies) if n.endswith(".py") and not n.startswith("_"))
    assert names == ["ablate", "chord_cv", "freq_resolution", "soundfont_grid"]
    for name in names:
        source = open(os.path.join(studies, name + ".py"), encoding="utf-8").read()
        assert 'if __name__ == "__main__":' in source
        assert f"python -m usad2.studies.{name}" in source  # its docstring shows the command
