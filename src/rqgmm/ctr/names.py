"""The names the CTR side accepts (feature sets, representations, splits, models), importable
without pandas so the command line can list them in its options."""

FEATURE_SETS = ("id", "emb", "sid", "sid+emb")
MISSING_ITEM_POLICIES = ("error", "zero")
SID_REPRESENTATIONS = ("level", "prefix", "level+prefix")
# how a level field's code embedding starts: a random row, or the code's codeword through a learned projection
SID_INITS = ("random", "codewords")
DEFAULT_PREFIX_BUCKETS = 100_000
SPLITS = ("time", "random", "cold-item")
# the CTR models of rqgmm.ctr.models (a test checks that the two lists agree)
MODEL_NAMES = ("fnn", "ipnn", "deepfm", "dcnv2", "din")
