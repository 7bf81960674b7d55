"""Features: what a decoded track becomes (mel spectrograms, encoder outputs), the HDF5
shards that hold them, and the featurize stage that fills them."""
