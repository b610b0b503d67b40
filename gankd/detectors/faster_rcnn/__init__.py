"""The Faster R-CNN family: GluonCV's Faster R-CNN presets, its RPN and R-CNN head as a
block, students on the teacher's stride-16 map, GluonCV's data pipeline and losses, and
:class:`FasterRCNNFamily` tying them to the loop."""
from .family import FASTER_RCNN, FasterRCNNFamily

__all__ = ['FASTER_RCNN', 'FasterRCNNFamily']
