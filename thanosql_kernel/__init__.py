"""ThanoSQL: a Jupyter kernel for SQL with AI statements."""
__version__ = "0.1.0"
