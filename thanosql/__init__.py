"""ThanoSQL in any IPython notebook: ``%load_ext thanosql``, then ``%%thanosql`` cells.

The magics run on thanosql_kernel's engine, as the ThanoSQL kernel does; rows come back as
pandas DataFrames.
"""

from thanosql_kernel.magic import load_ipython_extension, unload_ipython_extension

__all__ = ["load_ipython_extension", "unload_ipython_extension"]
