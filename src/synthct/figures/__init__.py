"""Figure building blocks shared by the products and the reports: slices, montages, plots.

This layer imports only geometry, volumes and I/O, never a product (the contract in
``.importlinter``); the package imports nothing so that ``import synthct.figures.x`` stays cheap.
"""
