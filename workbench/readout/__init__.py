"""The A/B readout: the Experiment facade, its decision and the record runs log."""
