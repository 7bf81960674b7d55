"""The work itself as plain functions: decoding, features, shards, models, training, inference."""
