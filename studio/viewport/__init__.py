"""The live 3DGS viewport: core.render.gl's preview renderer inside a QOpenGLWidget."""
