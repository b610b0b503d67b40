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
import json
import warnings

import mxnet as mx
from mxnet.gluon import SymbolBlock

from ..errors import GankdError

__all__ = ['parse_layers', 'layer_sides', 'resolve_layer', 'recording_view', 'forced_view']


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


def forced_view(block, layers, what='backbone'):
    """The block's graph cut at ``layers``, each cut fed from outside (teacher forcing).

    Every consumer of a named layer reads an input instead, so each *section* of the
    network (what lies between two cuts) computes from the value given for the cut before
    it: with the teacher's values, each section of the student learns from the teacher's
    input (LIT, Koratana et al. 2019), and no section waits for the ones before it.

    Parameters
    ----------
    block : HybridBlock
        An initialised backbone.
    layers : sequence of str
        The cuts, each resolved by :func:`resolve_layer`, in the order of the graph. Every
        path from the input must pass through the first.
    what : str
        Names the network in errors.

    Returns
    -------
    SymbolBlock
        Called with one array per layer (in ``layers``' order); returns the block's
        outputs computed from the cuts, then the value of each layer after the first
        computed from the cuts before it. Shares ``block``'s parameters; not yet
        hybridized.
    """
    outputs, _ = _graph(block)
    group = mx.sym.Group(outputs)
    names = group.get_internals().list_outputs()
    cut_names = [resolve_layer(names, layer, what)[:-len('_output')] for layer in layers]
    graph = json.loads(group.tojson())
    ids = {node['name']: i for i, node in enumerate(graph['nodes'])}
    cuts = [ids[name] for name in cut_names]
    # The cuts' inputs go first (variables need no inputs, so the order stays
    # topological); every other node moves up by as many.
    inputs = [{'op': 'null', 'name': 'cut{}'.format(k), 'inputs': []}
              for k in range(len(cuts))]
    moved = {c + len(cuts): k for k, c in enumerate(cuts)}

    def rewire(entry):
        node = entry[0] + len(cuts)
        return [moved.get(node, node)] + list(entry[1:])

    nodes = inputs + [dict(node, inputs=[rewire(e) for e in node['inputs']])
                      for node in graph['nodes']]
    heads = [rewire(h) for h in graph['heads']] + [[c + len(cuts), 0, 0] for c in cuts[1:]]
    sym = mx.sym.load_json(json.dumps({
        'nodes': nodes, 'heads': heads, 'attrs': graph.get('attrs', {}),
        'arg_nodes': [i for i, node in enumerate(nodes) if node['op'] == 'null']}))
    if 'data' in sym.list_arguments():
        raise GankdError('{}: the layers {} leave a path from the input around them; the '
                         'first must cut every path'.format(what, ','.join(layers)))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return SymbolBlock(sym, [mx.sym.var(node['name']) for node in inputs],
                           params=block.collect_params())
