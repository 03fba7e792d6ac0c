"""Install the kernelspec: python -m thanosql_kernel install [--user|--sys-prefix|--prefix P].

Where the package holds the built JupyterLab extension (``labextension/``, which ``make``
builds), it is installed beside the kernelspec, so JupyterLab highlights ThanoSQL.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "thanosql"
SPEC_DIR = Path(__file__).resolve().parent / "kernelspec"
LABEXTENSION_DIR = Path(__file__).resolve().parent / "labextension"


def install(user: bool = False, prefix: str | None = None) -> str:
    """Install the kernelspec pointing at this Python; returns the folder it went to."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = json.loads((SPEC_DIR / "kernel.json").read_text())
    # the interpreter that installs the kernel is the one that has its packages
    spec["argv"] = [sys.executable if a == "python" else a for a in spec["argv"]]
    with tempfile.TemporaryDirectory() as tmp:
        for logo in SPEC_DIR.glob("logo-*.png"):
            shutil.copy(logo, tmp)
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        return KernelSpecManager().install_kernel_spec(tmp, KERNEL_NAME, user=user,
                                                      prefix=prefix)


def install_labextension(user: bool = False, prefix: str | None = None) -> str | None:
    """Copy the built JupyterLab extension where JupyterLab looks for prebuilt ones; returns
    the folder, or None when the package holds no built extension."""
    from jupyter_core.paths import jupyter_data_dir

    manifest = LABEXTENSION_DIR / "package.json"
    if not manifest.is_file():
        return None
    name = json.loads(manifest.read_text())["name"]
    data = Path(jupyter_data_dir()) if user else Path(prefix or sys.prefix) / "share" / "jupyter"
    target = data / "labextensions" / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(LABEXTENSION_DIR, target)
    return str(target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m thanosql_kernel install",
                                     description="Install the ThanoSQL Jupyter kernelspec.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="install for the current user (the default)")
    where.add_argument("--sys-prefix", action="store_true",
                       help="install into sys.prefix (the active virtual environment)")
    where.add_argument("--prefix", help="install under this prefix")
    args = parser.parse_args(argv)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    # like `pip install --user`, the default needs no administrator rights
    path = install(user=prefix is None, prefix=prefix)
    print(f"Installed the ThanoSQL kernelspec in {path}")
    extension = install_labextension(user=prefix is None, prefix=prefix)
    if extension is not None:
        print(f"Installed ThanoSQL highlighting for JupyterLab in {extension}")


if __name__ == "__main__":
    main()
