"""Face tracking: landmarks and blendshapes (MediaPipe), the 3D template, head pose (Eq. 7-8) and the
Head-Sync Stabilizer (Eq. 9-12), and per-frame face regions. The stage's job is track.TrackJob."""
