"""Avatar Studio's library: media, tracking, audio features, Gaussian avatars, dubbing. Never imports Qt."""

__version__ = "0.1.0"
