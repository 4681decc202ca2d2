"""The version of Pixels (``from pixels.version import __version__``, as dbx.pixels has it)."""

__version__ = "0.1.0"
