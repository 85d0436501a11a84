"""Figures, tables and HTML reports. Plotting modules import matplotlib lazily (Agg backend)."""
