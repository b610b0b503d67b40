"""Distillation: the terms that compare teacher and student, their registry, and GAN-KD's
critics. A new method is one :class:`DistillTerm` subclass with one
``@register_term('name')`` line in a module of this package."""
from .base import (TERMS, Captures, DistillContext, DistillTerm, build_terms,
                   parse_term_options, register_term, term_names)
from .adversarial import AdversarialTerm
from .feature import CosineTerm, HintTerm
from .sections import TeacherForcedTerm
from .prediction import (BoundedRegressionTerm, CrossHeadTerm, DetectionImitationTerm,
                         SoftLabelTerm)

__all__ = ['TERMS', 'Captures', 'DistillContext', 'DistillTerm', 'build_terms',
           'parse_term_options', 'register_term', 'term_names', 'AdversarialTerm',
           'CosineTerm', 'HintTerm', 'BoundedRegressionTerm', 'CrossHeadTerm',
           'DetectionImitationTerm', 'SoftLabelTerm', 'TeacherForcedTerm']
