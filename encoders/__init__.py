"""Modality encoders, their registry, the joint model, training and export (`jointspace.encoders`).

Submodules import TensorFlow; this package itself does not, so `jointspace.encoders.registry`
lookups stay cheap until an encoder is really needed.
"""
