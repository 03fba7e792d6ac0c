"""``python -m thanosql_kernel``: start the kernel, or ``install`` its kernelspec."""

import sys

USAGE = """\
usage: python -m thanosql_kernel install [--user | --sys-prefix | --prefix PREFIX]
       python -m thanosql_kernel -f CONNECTION_FILE

The first form installs the "ThanoSQL" kernelspec, so that JupyterLab, jupyter console and
nbconvert can start the kernel (--user is the default; see install --help). The second is how
Jupyter starts the kernel itself; there is nothing to run by hand.
"""

if len(sys.argv) > 1 and sys.argv[1] == "install":
    from .install import main

    main(sys.argv[2:])
elif len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help", "help"):
    print(USAGE, end="")
else:
    from ipykernel.kernelapp import IPKernelApp

    from .kernel import ThanoSQLKernel

    IPKernelApp.launch_instance(kernel_class=ThanoSQLKernel)
