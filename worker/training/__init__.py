"""Training: datasets and splits, the training cache, the loop, evaluation, the job."""
