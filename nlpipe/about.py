"""The package's version. It imports nothing, so that any module can name it without importing
the package root (which would tie that module to whatever the root imports)."""

__version__ = "0.1.0"
