"""Which loss each self-supervised method trains with (docs/methods.md), without importing torch: the params
schema checks `method` against `loss.name` with it before any stage loads a model."""

# method name -> the `loss.name` it trains with (conf/method/<name>.yaml selects conf/loss/<loss>.yaml)
METHOD_LOSSES: dict[str, str] = {
    "triplet": "truncated_triplet",   # the paper's: BYOL's predictor + EMA target, truncated triplet loss
    "byol": "byol",                   # BYOL: the same model, regression to the target
    "infonce": "infonce",             # InfoNCE on BYOL's model (not SimCLR: predictor and EMA target kept)
    "simclr": "nt_xent",              # SimCLR: projector only, NT-Xent over both views of the batch
    "simsiam": "negative_cosine",     # SimSiam: projector + predictor, stop-gradient, no target network
    "emp_ssl": "coding_rate",         # EMP-SSL: n fixed-size patches, total coding rate + invariance
    "proto": "swav",                  # SwAV: swapped prediction of Sinkhorn prototype codes
}

# Methods whose model takes multi-crop's small views (train.local_views > 0).
TAKES_LOCAL_VIEWS = frozenset({"triplet", "byol", "infonce", "proto"})

# Methods trained on n equal patches per image (loss.patches, loss.patch_scale) and evaluated on the average
# backbone feature of loss.eval_patches patches (a bag of patches) instead of one centre crop.
PATCH_METHODS = frozenset({"emp_ssl"})
