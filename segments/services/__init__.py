"""Segments' writes, one module per topic."""
