"""`synthct demo`: the paper reproduced end to end on phantoms (:mod:`synthct.demo.pipeline`).

A package (not a namespace) so that the layer contract in ``.importlinter`` can see it; it
imports nothing so that ``import synthct.demo.x`` stays cheap.
"""
