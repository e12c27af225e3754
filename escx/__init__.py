"""escx."""
