"""Tests that keep the architecture honest: light imports, and docs for every statement."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from thanosql_kernel.engine import HANDLERS
from thanosql_kernel.syntax import (
    ALL_NODES, BuildModel, Convert, Copy, DeleteModel, GetDataset, ListDatasets, ListModels,
    ListTables, Magic, PrintImage, SearchImage, Sql,
)

ROOT = Path(__file__).resolve().parent.parent


def test_plain_sql_never_imports_torch_chromadb_pandas_or_pyparsing(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from thanosql_kernel.kernel import ThanoSQLKernel\n"
        "from thanosql_kernel.engine import Context, execute\n"
        "from thanosql_kernel.settings import Settings\n"
        "from thanosql_kernel.syntax import parse\n"
        "from thanosql_kernel.display import to_bundles\n"
        "ctx = Context.open(Settings.from_env())\n"
        "for node in parse('CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1); "
        "SELECT * FROM t'):\n"
        "    to_bundles(execute(node, ctx))\n"
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
    SearchImage: "SEARCH IMAGE", PrintImage: "PRINT IMAGE", DeleteModel: "DELETE MODEL",
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


def test_every_statement_node_has_a_handler() -> None:
    assert set(HANDLERS) == set(ALL_NODES)


def test_readme_lists_every_simclr_option_as_the_code_documents_it() -> None:
    from thanosql_kernel.models.options import SIMCLR_OPTION_DOCS

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
    from thanosql_kernel.engine import OPTIONS
    from thanosql_kernel.models.options import SIMCLR_OPTIONS

    assert set(SIMCLR_OPTIONS) <= set(OPTIONS[BuildModel])
    for node, specs in OPTIONS.items():
        names = [s.name for s in specs]
        assert len(names) == len(set(names)), f"{node.__name__} declares an option twice"
        for spec in specs:
            assert "default" in spec.doc, f"{node.__name__} {spec.name}: {spec.doc!r}"
    # the option names appear in no module but their declarations
    for path in [*_engine_modules(), ROOT / "thanosql_kernel" / "editing.py"]:
        assert "SIMCLR_OPTION_DOCS" not in path.read_text(), path.name
