"""ukbmri.cli."""
