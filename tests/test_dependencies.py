"""The declared dependencies (pyproject.toml) are exactly what src/lens imports.

Every `import` / `from ... import` in src/lens is read with `ast` (nothing is imported), its top-level
module mapped to a distribution with `importlib.metadata.packages_distributions()` (a module that is
not installed here, e.g. an extra's on a core-only install, stands for the distribution of the same
name), standard-library and
`lens` imports left out. Then:

1. Every imported distribution is declared: in `[project] dependencies` (core) or in an extra of
   `[project.optional-dependencies]` other than `dev` (dev holds test and lint tools only).
2. Every declared distribution (core and extras but dev) is imported somewhere, or is in
   `USED_WITHOUT_IMPORT` with the reason it is needed although no module imports it by name.
3. The rule for core vs extras: an import that runs when its module is imported (module level,
   including class bodies and `if` blocks) needs a core dependency. An import inside a function body,
   or under `if TYPE_CHECKING`, runs only when that feature is used: it may come from an extra. The
   packages of an optional feature, `FEATURE_PACKAGES`, may import their extra at module level,
   because nothing in core imports them at module level (`lens serve`, `lens data caption`).

`IMPORTED_THROUGH` names modules of one distribution that need another one installed
(`torch.utils.tensorboard` is tensorboard's writer, shipped in torch).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "lens"

USED_WITHOUT_IMPORT = {
    "accelerate": "diffusers' enable_model_cpu_offload and low_cpu_mem_usage loading need it",
}
IMPORTED_THROUGH = {"torch.utils.tensorboard": "tensorboard"}
FEATURE_PACKAGES = {"lens.serve": "serve", "lens.data.caption": "data"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip()).group(0))


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(core distributions, {extra: distributions}) from pyproject.toml, dev left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {
        extra: {_requirement_name(r) for r in reqs if _requirement_name(r) != "lens"}
        for extra, reqs in project.get("optional-dependencies", {}).items()
        if extra != "dev"
    }
    return core, extras


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(full module name, line, eager) of every absolute import in the file; eager = runs on import."""
    found = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, eager) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and not child.level and child.module:
                found.append((child.module, child.lineno, eager))
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), eager)
            else:
                visit(child, eager)

    visit(ast.parse(path.read_text(), str(path)), True)
    return found


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def used() -> dict[str, list[tuple[str, int, bool]]]:
    """{distribution: [(lens module, line, eager), ...]} for every third-party import in src/lens."""
    dists = packages_distributions()
    out: dict[str, list[tuple[str, int, bool]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        module = _module_of(path)
        for name, line, eager in imports(path):
            top = name.split(".")[0]
            if top == "lens" or top in sys.stdlib_module_names:
                continue
            names = {_norm(d) for d in dists.get(top, [top])}
            names |= {
                dist for prefix, dist in IMPORTED_THROUGH.items() if f"{name}.".startswith(f"{prefix}.")
            }
            for dist in names:
                out.setdefault(dist, []).append((module, line, eager))
    return out


def test_the_scan_sees_known_imports():
    found = used()
    assert ("lens.pipeline", True) in {(m, e) for m, _, e in found["torch"]}
    assert any(not eager for _, _, eager in found["tensorboard"])  # torch.utils.tensorboard, in a function


def test_every_imported_distribution_is_declared():
    core, extras = declared()
    known = core.union(*extras.values())
    missing = {
        dist: sorted({f"{m}:{line}" for m, line, _ in where})[:3]
        for dist, where in used().items()
        if dist not in known
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_declared_distribution_is_imported():
    core, extras = declared()
    found = used()
    unused = sorted(
        f"{dist} ({where})"
        for where, dists in [("core", core), *extras.items()]
        for dist in dists
        if dist not in found and dist not in USED_WITHOUT_IMPORT
    )
    assert not unused, f"declared but imported nowhere in src/lens (extra or core): {unused}"


def test_imports_that_run_on_import_are_core_or_their_features_extra():
    core, extras = declared()
    wrong = []
    for dist, where in used().items():
        for module, line, eager in where:
            if not eager or dist in core:
                continue
            feature = next(
                (x for p, x in FEATURE_PACKAGES.items() if module == p or module.startswith(p + ".")), None
            )
            if feature is None or dist not in extras.get(feature, set()):
                wrong.append(f"{module}:{line} imports {dist} at module level")
    assert not wrong, (
        "a module-level import needs a core dependency (or move it into the function that needs it): "
        + "; ".join(sorted(wrong))
    )
