"""Generative retrieval over semantic IDs, the field's standard test of a tokenizer: a TIGER-style
model reads a user's history as ID tokens and generates the next item's ID by beam search
constrained to real IDs; SASRec (item IDs) and popularity are the baselines; metrics are
item-level Recall/NDCG@K, cold-start items reported apart."""
