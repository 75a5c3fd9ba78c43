"""Facial expression tracks: the upper-face blendshapes that drive the avatar, as tracked or as edited."""
