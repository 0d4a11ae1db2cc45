"""No upward import between usad2's packages (issue 13): each package imports only packages on
lower levels (lazy imports inside functions count too), so the layers read bottom-up.

models and hf share a level: an export and its Hugging Face directory are one format read and
written in both places (models.checkpoint reads a directory through hf, hf writes a model).
"""
import ast
import os

import usad2

PACKAGE = os.path.dirname(os.path.abspath(usad2.__file__))
LEVELS = [
    {"errors", "version"},
    {"utils"},
    {"audio"},
    {"data", "teachers"},          # teachers/ holds the cards and the layer mapping
    {"targets", "domains", "models", "hf"},
    {"distill", "probe", "hear", "s3prl_upstream"},
    {"report", "xares"},
    {"llm_eval"},
    {"bin", "__init__"},
    {"studies"},                   # research drivers: nothing imports them (test_studies_layering.py)
]


def _package(path):
    parts = os.path.relpath(path, PACKAGE).split(os.sep)
    return parts[0][:-3] if len(parts) == 1 else parts[0]


def _imports(path):
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), filename=path)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("usad2."):
                yield node.lineno, name.split(".")[1]


def test_no_package_imports_one_above_it():
    level = {name: i for i, names in enumerate(LEVELS) for name in names}
    upward, unplaced = [], set()
    for directory, subdirs, files in os.walk(PACKAGE):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(directory, name)
            own = _package(path)
            for line, target in _imports(path):
                if own not in level or target not in level:
                    unplaced.update({own, target} - set(level))
                elif target != own and level[target] >= level[own] and {own, target} != {"models", "hf"}:
                    upward.append(f"{os.path.relpath(path, PACKAGE)}:{line} ({own}) imports usad2.{target}")
    assert not unplaced, f"packages not in LEVELS (place them): {sorted(unplaced)}"
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)
