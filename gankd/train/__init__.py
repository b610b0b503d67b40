"""Training: the one loop (:mod:`.loop`), assembling runs (:mod:`.run`), checkpoints,
gradient aggregation over devices and workers, and timing an iteration."""
