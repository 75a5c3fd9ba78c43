"""Shaders, icons, styles and the speech model, shipped as package data and read with importlib.resources."""
