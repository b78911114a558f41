"""xrdmtl."""
