"""Shaders, icons and styles, shipped as package data and read with importlib.resources."""
