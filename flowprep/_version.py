"""flowprep's version (its own module: every part of the package reads it from here)."""
__version__ = "0.1.0"
