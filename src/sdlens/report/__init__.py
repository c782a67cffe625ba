"""Presentation: rich tables for the terminal (HTML reports land with the experiments)."""
