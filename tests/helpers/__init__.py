"""Helpers shared by the test modules (and by the developer tools in tools/)."""
