"""The avatar: canonical Gaussians, triplane, deformation, training."""
