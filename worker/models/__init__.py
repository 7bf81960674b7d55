"""Models: the reference CNNs, pretrained encoders and their genre heads, model files."""
