"""ukbmri.models."""
