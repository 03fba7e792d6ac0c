"""Tests that keep the architecture honest: light imports, and docs for every statement."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from thanosql_kernel.engine import HANDLERS
from thanosql_kernel.syntax import (
    ALL_NODES,
    BuildModel,
    Convert,
    Copy,
    DeleteModel,
    Evaluate,
    GetDataset,
    ListDatasets,
    ListModels,
    ListTables,
    Magic,
    PrintEmbedding,
    PrintImage,
    SearchImage,
    Sql,
)

ROOT = Path(__file__).resolve().parent.parent


def test_plain_sql_never_imports_torch_chromadb_pandas_or_pyparsing(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from thanosql_kernel.kernel import ThanoSQLKernel\n"
        "from thanosql_kernel.engine import Services, execute\n"
        "from thanosql_kernel.settings import Settings\n"
        "from thanosql_kernel.syntax import parse\n"
        "from thanosql_kernel.display import to_bundles\n"
        "services = Services.open(Settings.from_env())\n"
        "for node in parse('CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1); "
        "SELECT * FROM t'):\n"
        "    to_bundles(execute(node, services))\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'chromadb', 'pandas', 'kornia',\n"
        "                           'pyparsing')\n"
        "               if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, env={"THANOSQL_WORKSPACE": str(tmp_path),
                                                     "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == ""


#: the README section that documents each statement
README_SECTIONS = {
    Sql: "PLAIN SQL", Magic: "COMPATIBILITY LINES", Copy: "COPY", ListTables: "LIST TABLE",
    ListModels: "LIST MODEL", ListDatasets: "LIST THANOSQL DATASET",
    GetDataset: "GET THANOSQL DATASET", BuildModel: "BUILD MODEL", Convert: "CONVERT USING",
    SearchImage: "SEARCH IMAGE", PrintImage: "PRINT IMAGE", PrintEmbedding: "PRINT EMBEDDING",
    Evaluate: "EVALUATE", DeleteModel: "DELETE MODEL",
}


def test_every_statement_that_runs_has_a_readme_section() -> None:
    assert set(README_SECTIONS) == set(ALL_NODES)
    readme = (ROOT / "README.md").read_text()
    headings = {h.strip().upper() for h in re.findall(r"^#{2,4} (.+)$", readme, re.M)}
    missing = [README_SECTIONS[node] for node in HANDLERS
               if not any(h.startswith(README_SECTIONS[node]) for h in headings)]
    assert not missing, f"README.md has no section for {missing}"


def test_every_module_opens_with_a_docstring() -> None:
    for path in sorted((ROOT / "thanosql_kernel").rglob("*.py")):
        text = path.read_text()
        assert text.lstrip().startswith('"""'), f"{path} has no opening docstring"


def test_every_statement_node_has_a_handler_and_every_row_statement_a_row_handler() -> None:
    from thanosql_kernel.engine import ROW_HANDLERS
    from thanosql_kernel.syntax.statements import ROW_NODES

    assert set(HANDLERS) == set(ALL_NODES)
    assert set(ROW_HANDLERS) == {Sql, *ROW_NODES}


# -- the import graph ---------------------------------------------------------------------

PACKAGE = ROOT / "thanosql_kernel"
#: the package's rooms (a top-level module or subpackage), lowest layer first: a module may
#: import its own room's modules and any room of a lower layer, never one beside or above
LAYERS = (
    ("", "errors", "results", "imports", "paths", "pictures", "install",
     "text"),
    ("options",),
    ("settings", "syntax"),
    ("storage", "vectors", "models", "datasets"),
    ("cluster",),
    ("engine",),
    ("display", "lexer"),
    ("frontend", "editing"),
    ("kernel", "magic"),
    ("__main__",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, wherever the import
    stands (at the top, inside a function, under TYPE_CHECKING)."""
    import ast

    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                # `from . import grammar` imports the module grammar, not the package
                targets = [f"{module}.{a.name}" for a in node.names
                           if f"{module}.{a.name}" in paths] or [module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in paths and t != name}
        graph[name] = found
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_package_imports_form_no_circle() -> None:
    graph = _import_graph()
    assert len(graph) > 40
    state: dict[str, int] = {}   # 1: being visited, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            assert state.get(target) != 1, \
                f"import circle: {' -> '.join(path[path.index(target):] + [target])}"
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_module_imports_one_beside_or_above_it() -> None:
    layer = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
    graph = _import_graph()
    assert {_room(m) for m in graph} == set(layer), "a room of the package has no layer"
    wrong = [f"{module} -> {target}" for module, targets in graph.items() for target in targets
             if _room(module) != _room(target) and layer[_room(target)] >= layer[_room(module)]]
    assert not wrong, f"imports that run sideways or back up: {wrong}"


def test_handler_modules_never_import_each_other() -> None:
    """A handler reads its query through ``run.rows`` and uses the services; what handlers
    share stands in the engine's support modules, which import no handler."""
    from thanosql_kernel.engine import ROW_HANDLERS

    handler_modules = {h.__module__ for h in HANDLERS.values()}
    graph = _import_graph()
    assert handler_modules <= {m for m in graph if m.startswith("thanosql_kernel.engine.")}
    assert {h.__module__ for h in ROW_HANDLERS.values()} <= handler_modules | {
        "thanosql_kernel.engine"}
    for module in graph:
        if module.startswith("thanosql_kernel.engine."):
            assert not graph[module] & handler_modules, \
                f"{module} imports the handler module(s) {graph[module] & handler_modules}"


def test_readme_lists_every_simclr_option_as_the_code_documents_it() -> None:
    from thanosql_kernel.models.config import SIMCLR_OPTION_DOCS

    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- simclr-options -->")[1].split("<!-- /simclr-options -->")[0]
    rows = [line for line in block.strip().splitlines() if line.startswith("| `")]
    assert rows == [f"| `{k}` | {v} |" for k, v in SIMCLR_OPTION_DOCS.items()]


ENGINE = ROOT / "thanosql_kernel" / "engine"
#: what only the storage services may do: talk SQLAlchemy, write DDL, read SQL with regexes
_STORAGE_ONLY_IMPORTS = {"sqlalchemy", "re"}
_STORAGE_ONLY_CALLS = {"exec_driver_sql", "execute", "create_all", "inspect"}
_DDL = re.compile(r"\b(ALTER\s+TABLE|CREATE\s+(TABLE|INDEX)|DROP\s+(TABLE|INDEX))\b", re.I)


def _engine_modules() -> list[Path]:
    modules = sorted(ENGINE.glob("*.py"))
    assert len(modules) >= 8
    return modules


def test_engine_handlers_are_plain_orchestration_over_the_services() -> None:
    """No SQLAlchemy, no DDL, no dialect branches, no SQL read with regular expressions in
    engine/: the storage services own all of that."""
    import ast

    for path in _engine_modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]} if node.level == 0 else set()
            else:
                names = set()
            assert not names & _STORAGE_ONLY_IMPORTS, f"{path.name} imports {names}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in _STORAGE_ONLY_CALLS | {"dialect"}, \
                    f"{path.name}:{node.lineno} uses .{node.attr}"
                # DataFrame.to_sql writes tables; a node's to_sql() only renders text
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "to_sql":
                assert not node.args, f"{path.name}:{node.lineno} writes a frame with to_sql"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not _DDL.search(node.value), f"{path.name}:{node.lineno} holds DDL"


def test_the_statement_registry_declares_every_thanosql_statement_once() -> None:
    from thanosql_kernel.syntax.statements import PHRASES, STATEMENTS, statement_for

    assert {s.node for s in STATEMENTS} == set(ALL_NODES) - {Sql, Magic}
    assert len({s.node for s in STATEMENTS}) == len(STATEMENTS)
    for node, section in README_SECTIONS.items():
        if node not in (Sql, Magic):
            assert statement_for(node).phrases[0] == section
    # the parser and completion derive the statement words; they do not write them again
    for module in ("syntax/parser.py", "editing.py"):
        text = (ROOT / "thanosql_kernel" / module).read_text()
        written = [p for p in PHRASES if f'"{p}' in text or f"'{p}" in text or
                   f"({p.split()[0]}|" in text]
        assert not written, f"{module} spells out {written}"


def test_every_option_of_every_statement_is_declared_once_with_its_default() -> None:
    from thanosql_kernel.engine import STATEMENT_OPTIONS
    from thanosql_kernel.models.config import SIMCLR_OPTIONS

    assert set(SIMCLR_OPTIONS) <= set(STATEMENT_OPTIONS[BuildModel])
    for node, specs in STATEMENT_OPTIONS.items():
        names = [s.name for s in specs]
        assert len(names) == len(set(names)), f"{node.__name__} declares an option twice"
        for spec in specs:
            assert "default" in spec.doc, f"{node.__name__} {spec.name}: {spec.doc!r}"
    # the option names appear in no module but their declarations
    for path in [*_engine_modules(), ROOT / "thanosql_kernel" / "editing.py"]:
        assert "SIMCLR_OPTION_DOCS" not in path.read_text(), path.name
