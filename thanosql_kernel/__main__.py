"""``python -m thanosql_kernel``: start the kernel, or ``install`` its kernelspec."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "install":
    from .install import main

    main(sys.argv[2:])
else:
    from ipykernel.kernelapp import IPKernelApp

    from .kernel import ThanoSQLKernel

    IPKernelApp.launch_instance(kernel_class=ThanoSQLKernel)
