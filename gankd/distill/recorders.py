"""Recorders: a backbone's internal outputs, captured for terms that compare them.

A term that compares more than the maps the head receives (e.g. ``hint.layers``, FitNets'
hints on intermediate stages) names the internal layers it needs in
:attr:`gankd.distill.DistillTerm.records`. For those, the run builds a *recording view* of
the student's and of the teacher's backbone: a ``SymbolBlock`` over the backbone's own
graph and parameters that returns the backbone's outputs followed by the named internal
outputs, in one forward pass. It shares every parameter with the backbone (the same
``Parameter`` objects, so the Trainer, checkpoints and the deliverable are unchanged) and
computes exactly the backbone's maps. MMRazor calls this a recorder; here a layer is named
by the end of its output's name in the graph, e.g. ``stage2_activation1`` for GluonCV's
ResNet, so the same name finds the layer in a student and a teacher whose prefixes differ.
Where the two networks differ in depth, an entry ``student_layer:teacher_layer`` pairs
two layers of different names (e.g. ``stage2__plus0:stage2__plus1``: the end of stage 2
in a one-block-per-stage student and in resnet18_v1).
"""
import warnings

import mxnet as mx
from mxnet.gluon import SymbolBlock

from ..errors import GankdError

__all__ = ['parse_layers', 'layer_sides', 'resolve_layer', 'recording_view']


def parse_layers(layers):
    """``'stage1_activation1,stage2_activation1'`` (or a sequence) -> tuple of names."""
    if isinstance(layers, str):
        layers = layers.split(',')
    return tuple(name.strip() for name in (layers or ()) if name and name.strip())


def layer_sides(entry):
    """``'stage2__plus0:stage2__plus1'`` -> ``('stage2__plus0', 'stage2__plus1')``, the
    student's and the teacher's layer of a recorded entry; an entry without ``:`` names
    the same layer in both."""
    student, _, teacher = entry.partition(':')
    return student, teacher or student


def _graph(block):
    """The block's outputs as symbols, and its input variable."""
    data = mx.sym.var('data')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        out = block(data)
    return list(out) if isinstance(out, (list, tuple)) else [out], data


def resolve_layer(internals, layer, what='backbone'):
    """The full name of the one internal output whose name ends with ``layer``.

    Parameters
    ----------
    internals : list of str
        ``symbol.get_internals().list_outputs()``.
    layer : str
        E.g. ``'stage2_activation1'``.
    what : str
        Names the network in errors.

    Returns
    -------
    str
    """
    wanted = layer + '_output'
    found = [n for n in internals if n == wanted or n.endswith('_' + wanted)]
    if len(found) != 1:
        raise GankdError('{} has {} layer {!r}: a recorded layer must name exactly one '
                         'internal output of its graph (e.g. stage2_activation1 for a '
                         'GluonCV ResNet)'.format(what, 'no' if not found else 'more than one',
                                                  layer))
    return found[0]


def recording_view(block, layers, what='backbone'):
    """A block computing ``block``'s outputs followed by its internal ``layers``.

    Parameters
    ----------
    block : HybridBlock
        An initialised backbone (hybridizable; a GluonCV FeatureExpander or a student).
    layers : sequence of str
        Internal layers, each resolved by :func:`resolve_layer`.
    what : str
        Names the network in errors.

    Returns
    -------
    SymbolBlock
        Shares ``block``'s parameters; not yet hybridized.
    """
    outputs, data = _graph(block)
    internals = mx.sym.Group(outputs).get_internals()
    names = internals.list_outputs()
    recorded = [internals[resolve_layer(names, layer, what)] for layer in layers]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # MXNet warns that 'data' has no type yet
        return SymbolBlock(outputs + recorded, data, params=block.collect_params())

