"""The architecture stays as drawn: layers import only downwards (import-linter's contracts in
pyproject.toml), no import circle anywhere in the package, and every import at the top of its module
(except those of two libraries that are slow to import, which sit where they are used)."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pyro_ebnn"


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"})


def test_every_layer_imports_only_the_layers_below_it():
    res = lint_imports(ROOT, ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 2 kept, 0 broken." in res.stdout


def test_the_contract_fails_when_a_lower_layer_imports_a_higher_one(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "pyro_ebnn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    layers = tmp_path / "pyro_ebnn" / "bnn" / "layers.py"
    layers.write_text(layers.read_text() + "\nfrom ..experiment import config  # noqa: upwards, on purpose\n")
    res = lint_imports(tmp_path, tmp_path)
    assert res.returncode == 1
    assert "pyro_ebnn.bnn.layers -> pyro_ebnn.experiment.config" in res.stdout


def _circles(imports: dict) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan) of ``{module: imported}``."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in imports.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    sys.setrecursionlimit(10000)
    for v in sorted(imports):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_anywhere_in_the_package():
    graph = grimp.build_graph("pyro_ebnn", cache_dir=None)
    # package __init__ modules only re-export their children, so they are left out (a module that
    # imports a sibling through its package would otherwise close a circle with the package)
    modules = {m for m in graph.modules if not (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()}
    imports = {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}
    assert sum(map(len, imports.values())) > 50      # the graph is there
    assert _circles(imports) == []
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: libraries imported where they are used, not at the top: importing them takes seconds that every
#: command would pay (the command line starts in 4.4 s instead of 6.6 s on an idle 2-core CPU,
#: docs/results/cost.md), and most commands do not need them
DEFERRED = ("torchvision", "captum")


def _imported(node) -> list:
    return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def test_imports_are_at_the_top_of_their_modules():
    late, early = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                late += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(node)
                         if isinstance(n, (ast.Import, ast.ImportFrom))
                         and not all(m.split(".")[0] in DEFERRED for m in _imported(n))]
        early += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                  and any(m.split(".")[0] in DEFERRED for m in _imported(n))]
    assert late == []    # the package's own modules and every other library: at the top
    assert early == []   # the slow ones: only where used (typing-only imports sit under TYPE_CHECKING)
