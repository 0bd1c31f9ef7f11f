"""External check: our pipeline on data we did not write (ChurnSim; see README.md)."""
