"""The ``flowprep`` command (installed as the package flowprep.cli)."""
