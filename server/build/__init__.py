"""Building index generations from catalogs: locally or on Apache Beam, and the validation
gate a rebuild may have to pass."""
