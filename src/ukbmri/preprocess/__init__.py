"""ukbmri.preprocess."""
