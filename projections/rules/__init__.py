"""The audit's rule families, one module each, composed by projections/audit_rules.py."""
