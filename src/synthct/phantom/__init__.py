"""Physically based spine phantoms: one tissue map rendered as CT (HU) and multi-echo MRI."""
