"""Data exchange out of the twin: GIS, CAD, CJJ 61 tables and EPANET (issue 15)."""
