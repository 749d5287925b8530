__version__ = "0.3.0"   # the one place; pyproject.toml reads it (tool.setuptools.dynamic)
