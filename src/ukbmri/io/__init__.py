"""ukbmri.io."""
