"""Data: VOC- and COCO-layout datasets, the synthetic generator, the start-up check, and
the loaders every family shares (a family's own transforms live with the family)."""
