"""Ingest: survey tables (CJJ 61) and EPANET networks into the twin, with data checks."""
