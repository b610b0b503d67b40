"""The SSD family: GluonCV's SSD presets, its head as a block, students on the teacher's
six levels, SSD's data pipeline, and :class:`SSDFamily` tying them to the loop."""
from .family import SSD, SSDFamily

__all__ = ['SSD', 'SSDFamily']
