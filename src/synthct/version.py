"""The version of synthct, in a module of its own so that any layer can read it.

Modules import it from here, not from the package (``synthct/__init__.py`` names every product's
entry point for type checkers, so importing it from a lower layer would reach upwards).
"""

__version__ = "0.1.0"
