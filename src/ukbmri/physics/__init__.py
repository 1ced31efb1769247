"""ukbmri.physics."""
