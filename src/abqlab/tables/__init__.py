"""Tables and figures built from the results store only."""
