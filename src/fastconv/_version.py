"""The one source of fastconv's version: pyproject.toml reads it, ``fastconv.__version__`` is it."""
__version__ = "0.1.0"
