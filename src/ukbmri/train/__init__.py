"""ukbmri.train."""
