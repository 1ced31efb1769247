"""ukbmri.infer."""
