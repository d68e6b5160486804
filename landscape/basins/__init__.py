"""Basin volume, local learning coefficient, Jacobian rank, symmetry and basin counting."""
