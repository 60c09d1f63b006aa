"""Analyses on the twin: approval (collision, clearance, cover, section, profile, proposals and
their workflow) and emergency (valve segments, shutoff, dig-site hazards), as functions over the
network's arrays that the API and the CLI both call."""
