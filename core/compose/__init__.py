"""Compositing: the rendered face blended back into the original footage (SyncTalk++ Portrait-Sync Generator)."""
