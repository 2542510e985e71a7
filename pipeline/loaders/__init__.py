"""Loaders over .beton files: the two-view SSL loader (BYOL augmentations) and the evaluation loaders.

    ssl        SSLLoader: two random-resized crops per image (ffcv, numba) + colour/blur/solarize in torch
    eval       ClassificationEvalLoader (resize + centre crop), ReidEvalLoader (SYSU 256 x 128 resize),
               LinearTrainLoader (one random-resized crop + flip)
    augment    the batched BYOL augmentation module (any device, seeded, reports what it applied)
    colour     the batched colour / blur / solarize functions behind it
    decoders   ffcv decoders with reproducible randomness
    from_params  the same loaders configured from params.yaml, with the stale-.beton checks
Importing this package does not import ffcv; the loader modules do.
"""
