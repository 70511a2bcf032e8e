"""Reading, curating, tokenising and sharding dialogue data."""
