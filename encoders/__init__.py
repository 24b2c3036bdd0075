"""Modality encoders, their registry, the joint model, training and export (`jointspace.encoders`).

Submodules import TensorFlow; this package itself does not.
"""
