"""Detector families: the interface the loop talks to (:mod:`.family`), saving and
loading detectors (:mod:`.detector`), and one folder per family (:mod:`.ssd`)."""
