"""Physics of powder diffraction: units, the Q grid, phases and their reflections, patterns, peak evidence."""
