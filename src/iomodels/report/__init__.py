"""Rendering results: terminal output, the compare table, charts and the HTML report."""
