"""CTR side: data sets, splits, features, models, training and evaluation with semantic IDs."""
