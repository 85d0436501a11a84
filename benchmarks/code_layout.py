"""Code layout before and after a change: size per package, long modules and functions, cycles.

For each git revision given (default: main's start of issue #18, ``36ac792``, and ``HEAD``) it
reads ``src/synthct`` as committed (``git show``; the working tree is not touched) and prints:

* lines of code per top-level package or module (non-blank lines that are not ``#`` comments;
  docstrings count);
* modules over 500 lines and functions over 80 lines (total lines, ``ast`` spans);
* import cycles: pairs of top-level packages that import each other (any import statement,
  also inside functions and under ``TYPE_CHECKING``) and modules that lie on a cycle.

Run: .venv/bin/python benchmarks/code_layout.py [REV ...]
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/synthct"
DEFAULT_REVISIONS = ("36ac792", "HEAD")
#: Thresholds of the issue's table (issue #18).
LONG_MODULE_LINES = 500
LONG_FUNCTION_LINES = 80


@dataclass
class Layout:
    """What one revision's ``src/synthct`` looks like."""

    revision: str
    loc_by_package: dict[str, int] = field(default_factory=dict)
    long_modules: list[tuple[str, int]] = field(default_factory=list)
    long_functions: list[tuple[str, int]] = field(default_factory=list)
    package_cycles: list[tuple[str, str]] = field(default_factory=list)
    modules_on_cycles: list[str] = field(default_factory=list)
    n_modules: int = 0


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def _module_name(path: str) -> str:
    parts = path.removeprefix("src/").removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every ``synthct`` module name an import statement of ``tree`` names."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("synthct")}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(synthct)"


def _cyclic_modules(edges: dict[str, set[str]]) -> list[str]:
    """Modules on an import cycle (strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[str] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                found.extend(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def layout(revision: str) -> Layout:
    """Read ``src/synthct`` at ``revision`` and measure it."""
    files = [
        f
        for f in _git("ls-tree", "-r", "--name-only", revision, PACKAGE).split()
        if f.endswith(".py")
    ]
    result = Layout(revision, n_modules=len(files))
    trees: dict[str, tuple[ast.AST, bool]] = {}
    loc: dict[str, int] = defaultdict(int)
    for path in files:
        text = _git("show", f"{revision}:{path}")
        lines = text.splitlines()
        module = _module_name(path)
        loc[_top(module)] += sum(
            1 for ln in lines if ln.strip() and not ln.lstrip().startswith("#")
        )
        if len(lines) > LONG_MODULE_LINES:
            result.long_modules.append((module, len(lines)))
        tree = ast.parse(text)
        trees[module] = (tree, path.endswith("__init__.py"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                span = (node.end_lineno or node.lineno) - node.lineno + 1
                if span > LONG_FUNCTION_LINES:
                    result.long_functions.append((f"{module}.{node.name}", span))
    result.loc_by_package = dict(sorted(loc.items()))

    names = set(trees)
    edges: dict[str, set[str]] = {}
    for module, (tree, is_package) in trees.items():
        targets = set()
        for name in _imports(tree, module, is_package):
            while name and name not in names:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    pairs = {(_top(a), _top(b)) for a, bs in edges.items() for b in bs if _top(a) != _top(b)}
    result.package_cycles = sorted((a, b) for a, b in pairs if a < b and (b, a) in pairs)
    result.modules_on_cycles = _cyclic_modules(edges)
    result.long_modules.sort(key=lambda m: -m[1])
    result.long_functions.sort(key=lambda f: -f[1])
    return result


def print_table(layouts: list[Layout]) -> None:
    """The before/after table (markdown), then the long modules and cycles of each revision."""
    header = "| | " + " | ".join(lay.revision for lay in layouts) + " |"
    print(header)
    print("|---" * (len(layouts) + 1) + "|")
    packages = sorted({p for lay in layouts for p in lay.loc_by_package})
    for package in packages:
        cells = [str(lay.loc_by_package.get(package, "-")) for lay in layouts]
        print(f"| LOC {package} | " + " | ".join(cells) + " |")
    rows = {
        "LOC total": [sum(lay.loc_by_package.values()) for lay in layouts],
        "modules": [lay.n_modules for lay in layouts],
        f"modules > {LONG_MODULE_LINES} lines": [len(lay.long_modules) for lay in layouts],
        f"functions > {LONG_FUNCTION_LINES} lines": [len(lay.long_functions) for lay in layouts],
        "package pairs importing each other": [len(lay.package_cycles) for lay in layouts],
        "modules on an import cycle": [len(lay.modules_on_cycles) for lay in layouts],
    }
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(str(v) for v in values) + " |")
    for lay in layouts:
        print(f"\n## {lay.revision}")
        print("package cycles:", ", ".join(f"{a} <-> {b}" for a, b in lay.package_cycles) or "none")
        print("modules on cycles:", ", ".join(lay.modules_on_cycles) or "none")
        print("modules > 500 lines:", ", ".join(f"{m} ({n})" for m, n in lay.long_modules))
        print("functions > 80 lines:", ", ".join(f"{f} ({n})" for f, n in lay.long_functions))


def main(argv: list[str]) -> None:
    """Measure each revision in ``argv`` (default: 36ac792 and HEAD) and print the table."""
    print_table([layout(rev) for rev in (argv or list(DEFAULT_REVISIONS))])


if __name__ == "__main__":
    main(sys.argv[1:])
