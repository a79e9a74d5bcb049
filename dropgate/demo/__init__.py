"""``dropgate demo``: a simulated crowd against every domain, then a summary table."""
