"""ukbmri.synth."""
