"""Orchestration of several products: what combines them lives here, above them all.

:mod:`~synthct.workflows.audit_column` runs the omission audit inside a validation (validation
and the audit do not import each other). The package imports nothing so that
``import synthct.workflows.x`` stays cheap.
"""
