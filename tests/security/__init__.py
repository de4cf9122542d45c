"""Hostile-input tests: what a careless device or a curious token can do to the system."""
