"""ukbmri.engine."""
