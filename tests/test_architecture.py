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
