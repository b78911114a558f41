"""Reading and writing files: 1D patterns, detector frames (pyFAI), masks, labels, CSV and figures."""
