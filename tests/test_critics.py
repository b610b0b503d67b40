"""Issue 12: critic variants of the adversarial term, what the critics see, the warm-up.

The maps are those of tests/test_terms.py (the test teacher, an SSD at 64 px, three images, a
perturbed copy as the student). Critics are narrow (width 8) to keep the tests fast.
"""
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from conftest import DATA_SHAPE, STUDENT, TEACHER
from gankd.distill.critics import CRITIC_NORMS, SNConv2D, trainable
from gankd.distill.critic_losses import CRITICS, WGANGP
from gankd.distill import AdversarialTerm, DistillTerm
from gankd.errors import GankdError
import test_terms
from test_terms import ONE, TWO, make_caps, perturbed

NUM_LEVELS = 6


@pytest.fixture(scope='module')
def setup():
    """The maps, heads and targets of tests/test_terms.py."""
    return test_terms.setup.__wrapped__()


def make_term(d, ctx=ONE, **kwargs):
    kwargs.setdefault('width', 8)
    return AdversarialTerm(d['shapes'], ctx, **kwargs)


def snapshot(block):
    return {k: p.data(p.list_ctx()[0]).asnumpy().copy()
            for k, p in block._collect_params_with_prefix().items()}


def power_vectors(term):
    """The spectral-norm vectors ``u`` of every device, to restore with :func:`restore`."""
    return {k: [a.copy() for a in p.list_data()]
            for k, p in term.critics.collect_params().items() if k.endswith('_u')}


def restore(term, saved):
    params = term.critics.collect_params()
    for k, arrays in saved.items():
        for dst, src in zip(params[k].list_data(), arrays):
            src.copyto(dst)


def converge_spectral_norm(term, d, devices, iterations=60):
    """Power iterations (training-mode forwards) on every device, weights unchanged."""
    caps = make_caps(d, d['t_maps'], devices)
    with autograd.train_mode():
        for _ in range(iterations):
            for cap in caps:
                term.critics(cap.teacher_maps)


# ---------------------------------------------------------------------------- registry

def test_registry_flags_and_defaults_agree():
    from gankd.cli import CRITIC_CHOICES, CRITIC_NORM_CHOICES, gan_options, training_parser
    assert tuple(CRITICS) == CRITIC_CHOICES and CRITIC_CHOICES[0] == 'wgan-clip'
    assert set(CRITIC_NORMS) == set(CRITIC_NORM_CHOICES)
    args = training_parser('t', distill=True).parse_args([])
    opts = gan_options(args)
    assert opts['critic'] == 'wgan-clip' and opts['critic_norm'] == 'rms'
    assert opts['critic_levels'] is None and opts['adv_warmup'] == 0
    assert opts['critic_bn'] is None and opts['gp_weight'] == 10.0
    args = training_parser('t', distill=True).parse_args(
        ['--critic', 'hinge-sn', '--critic-levels', '0,2', '--no-critic-bn'])
    assert gan_options(args)['critic_levels'] == [0, 2]
    assert gan_options(args)['critic_bn'] is False


@pytest.mark.parametrize('critic, bn, sn', [('wgan-clip', True, False), ('wgan-gp', False, False),
                                            ('hinge-sn', False, True), ('lsgan', True, False)])
def test_each_critic_builds_with_its_defaults(setup, critic, bn, sn):
    term = make_term(setup, critic=critic)
    assert term.critic_bn is bn
    convs = [b for c in term.critics.levels for b in list(c.body) + [c.score]
             if isinstance(b, gluon.nn.Conv2D)]
    assert convs and all(isinstance(c, SNConv2D) is sn for c in convs)
    has_bn = any(isinstance(b, gluon.nn.BatchNorm) for c in term.critics.levels for b in c.body)
    assert has_bn is bn
    assert make_term(setup, critic=critic, critic_bn=not bn).critic_bn is (not bn)


def test_unknown_critic_norm_and_levels_are_refused(setup):
    with pytest.raises(GankdError, match='unknown critic'):
        make_term(setup, critic='wgan')
    with pytest.raises(GankdError, match='critic norm'):
        make_term(setup, input_norm='batch')
    for levels in ([6], [], [1, 1], ['a']):
        with pytest.raises(GankdError, match='critic levels'):
            make_term(setup, levels=levels)


# ---------------------------------------------------------------------------- the default

def _short_run(voc_root, teacher_params, argv):
    """Two iterations of a GAN-KD run built from ``argv`` as the script builds it."""
    from gankd.train.run import build_gankd_run
    from gankd.cli import gan_options, seed_everything, training_parser
    from gankd.data.voc import voc_datasets
    from gankd.train.loop import train_one_epoch
    args = training_parser('t', distill=True).parse_args(argv)
    train_set, _, classes = voc_datasets(voc_root)
    seed_everything(7)
    run = build_gankd_run(TEACHER, STUDENT, DATA_SHAPE, classes, [mx.cpu()],
                          teacher_params=teacher_params, optimizer='adam', **gan_options(args))
    loader = run.family.train_loader(train_set, run, DATA_SHAPE, 8, seed=7)
    loader.set_epoch(0)
    mx.random.seed(7)
    train_one_epoch(run, loader, 0, log_interval=0)
    return run


def test_recipes_give_the_published_gankd_and_best_settings_one_flag_each():
    from gankd.cli import apply_recipe, training_parser

    def parsed(argv, family='ssd'):
        return apply_recipe(training_parser('t', distill=True, family=family).parse_args(argv))
    assert (parsed([]).distill, parsed([]).adv_weight) == ('gan,cosine', 0.1)
    assert (parsed(['--recipe', 'gankd']).distill, parsed(['--recipe', 'gankd']).adv_weight) \
        == ('gan', 0.1)
    published = parsed(['--recipe', 'published'])
    assert (published.distill, published.adv_weight) == ('gan', 1.0)
    # Flags given explicitly win over the recipe.
    mixed = parsed(['--recipe', 'published', '--adv-weight', '0.5', '--distill', 'gan,hint'])
    assert (mixed.distill, mixed.adv_weight) == ('gan,hint', 0.5)
    # Faster R-CNN keeps GAN-KD alone: the composite was measured on SSD only.
    assert parsed([], 'faster_rcnn').distill == 'gan'


def test_the_scripts_default_trains_gankd_with_a_cosine_term(voc_root, teacher_params,
                                                             tmp_path):
    """Through the script's own code path: no flag means the critics plus the cosine term,
    ``--recipe published`` the critics alone at weight 1."""
    import json
    from gankd.cli import train_from_args, training_parser
    weights = {}
    for name, extra in (('default', []), ('published', ['--recipe', 'published'])):
        prefix = str(tmp_path / name)
        train_from_args(training_parser('t', distill=True).parse_args([
            '--teacher', TEACHER, '--student', STUDENT, '--teacher-params', teacher_params,
            '--data-shape', str(DATA_SHAPE), '--dataset-root', voc_root, '--batch-size', '8',
            '-j', '0', '--save-prefix', prefix, '--optimizer', 'adam', '--epochs', '1',
            '--skip-data-check', '--log-interval', '0'] + extra), distill=True)
        with open(prefix + '_last.json') as f:
            weights[name] = json.load(f)['distill']
        with open(prefix + '_history.jsonl') as f:
            logged = set(json.loads(f.readline()))
        assert ('Loss_cosine' in logged) is (name == 'default') and 'Loss_G' in logged
    assert weights == {'default': {'gan': 0.1, 'cosine': 1.0}, 'published': {'gan': 1.0}}


def test_wgan_clip_flags_give_bit_identical_weights_to_the_defaults(voc_root, teacher_params):
    """``--critic wgan-clip`` (and the other new flags at their defaults) trains exactly as
    no flag: same student, head, critics and critic input scales, bit for bit."""
    default = _short_run(voc_root, teacher_params, [])
    explicit = _short_run(voc_root, teacher_params, [
        '--critic', 'wgan-clip', '--critic-norm', 'rms', '--critic-levels', '0,1,2,3,4,5',
        '--adv-warmup', '0', '--gp-weight', '10', '--critic-bn'])
    assert set(default.blocks()) == set(explicit.blocks()) == {'model', 'critics'}
    for key in default.blocks():
        a, b = snapshot(default.blocks()[key]), snapshot(explicit.blocks()[key])
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert default.terms[0].critics.is_calibrated()
    assert default.meta['critic'] == 'wgan-clip' and default.meta['critic_bn'] is True
    # The default checkpoint holds exactly the parameters it held before the variants
    # (no standardisers, no power-iteration vectors): older checkpoints still load.
    names = default.terms[0].critics._collect_params_with_prefix()
    assert 'input_scales' in names
    assert not [n for n in names if 'standardiser' in n or n.endswith('.u')]
    # The comparison can tell: a warm-up changes the student's first update.
    warm = _short_run(voc_root, teacher_params, ['--adv-warmup', '5'])
    a, b = snapshot(default.backbone), snapshot(warm.backbone)
    assert any(not np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- every variant

@pytest.mark.parametrize('critic', list(CRITICS))
def test_gradients_reach_the_student_never_the_teacher(setup, critic):
    d = setup
    term = make_term(d, TWO, critic=critic)
    caps = make_caps(d, perturbed(d['t_maps']), TWO)
    for cap in caps:
        for m in cap.student_maps + cap.teacher_maps:
            m.attach_grad()
    # Critic step: trains the critics, sends nothing to either network's maps.
    before = snapshot(term.critics.levels)
    losses, _ = term.critic_losses(caps)
    autograd.backward(losses)
    for cap in caps:
        for m in cap.student_maps + cap.teacher_maps:
            assert m.grad.abs().sum().asscalar() == 0
    term.prepare(caps)
    after = snapshot(term.critics.levels)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    # Student step: every device's student maps get a gradient, the teacher's none.
    with autograd.record():
        losses = term.losses(caps)
    autograd.backward(losses)
    for cap in caps:
        norms = [m.grad.abs().sum().asscalar() for m in cap.student_maps]
        assert all(math.isfinite(n) for n in norms) and sum(norms) > 0
        assert all(m.grad.abs().sum().asscalar() == 0 for m in cap.teacher_maps)


@pytest.mark.parametrize('critic', list(CRITICS))
def test_two_devices_sum_to_one(setup, critic):
    """Critic objective (with its penalty) and student term: the per-device values on
    cpu(0) + cpu(1) (2 + 1 images) sum to the one-device value. BatchNorm off: with it a
    device's scores depend on that device's images."""
    d = setup
    term = make_term(d, TWO, critic=critic, critic_bn=False)
    s_maps = perturbed(d['t_maps'])
    # Spectral norm: every device starts from the same vectors, as in a run (where they
    # see the same weights and the same number of forwards).
    saved = power_vectors(term)
    values = {}
    for devices in (ONE, TWO):
        restore(term, saved)
        caps = make_caps(d, s_maps, devices)
        np.random.seed(3)  # the same interpolates on both splits (wgan-gp)
        losses, logged = term.critic_losses(caps)
        with autograd.record():
            student = term.losses(caps)
        values[len(devices)] = [sum(l.asscalar() for l in losses),
                                sum(l.asscalar() for l in student)] + [
            sum(v.asscalar() for v in logged[k]) for k in sorted(logged)]
    np.testing.assert_allclose(values[2], values[1], rtol=1e-4, atol=1e-6)


def _scores(term, caps):
    return ([s.asnumpy() for s in term.critics(caps[0].teacher_maps)],
            [s.asnumpy() for s in term.critics(caps[0].student_maps)])


@pytest.mark.parametrize('critic', list(CRITICS))
def test_objectives_match_numpy(setup, critic):
    d = setup
    term = make_term(d, critic=critic)
    if critic == 'wgan-gp':
        term.critic_loss.gp_weight = 0.0  # the penalty is tested on its own below
    if critic == 'hinge-sn':
        converge_spectral_norm(term, setup, ONE, iterations=150)
    caps = make_caps(d, perturbed(d['t_maps']), ONE)
    losses, logged = term.critic_losses(caps)
    with autograd.train_mode():
        real, fake = _scores(term, caps)
    with autograd.record():
        student = term.losses(caps)[0].asscalar()
    mean = lambda f, scores: sum(f(s).mean() for s in scores)  # noqa: E731
    expected = {
        'wgan-clip': (mean(lambda s: s, real) - mean(lambda s: s, fake), mean(lambda s: s, fake)),
        'wgan-gp': (mean(lambda s: s, real) - mean(lambda s: s, fake), mean(lambda s: s, fake)),
        'hinge-sn': (mean(lambda s: np.maximum(1 - s, 0), real) +
                     mean(lambda s: np.maximum(1 + s, 0), fake), -mean(lambda s: s, fake)),
        'lsgan': (mean(lambda s: (s - 1) ** 2 / 2, real) + mean(lambda s: s ** 2 / 2, fake),
                  mean(lambda s: (s - 1) ** 2 / 2, fake)),
    }[critic]
    # BatchNorm in training mode, spectral norm converging: same inputs, same scores.
    np.testing.assert_allclose([losses[0].asscalar(), student], expected, rtol=2e-3,
                               atol=1e-5)
    np.testing.assert_allclose(logged['Loss_D_real'][0].asscalar(), mean(lambda s: s, real),
                               rtol=2e-3, atol=1e-5)


# ---------------------------------------------------------------------------- wgan-clip

def test_wgan_clip_keeps_every_weight_within_the_bound(setup):
    d = setup
    term = make_term(d, clip=0.01, n_critic=3)
    seen = []
    term.step_hooks.append(lambda w: seen.append(max(abs(p.data()).max().asscalar()
                                                     for p in w.values())))
    term.critics.initialize(mx.init.Normal(0.5), force_reinit=True)  # far outside the bound
    term.prepare(make_caps(d, perturbed(d['t_maps'])))
    assert len(seen) == 3 and max(seen) <= 0.01 + 1e-8


# ---------------------------------------------------------------------------- wgan-gp

def test_gradient_penalty_is_computed_on_interpolates(setup):
    d = setup
    term = make_term(d, critic='wgan-gp')
    caps = make_caps(d, perturbed(d['t_maps']), ONE)
    seen = {}
    for i, critic in enumerate(term.critics.levels):
        critic.register_forward_pre_hook(
            lambda block, args, i=i: seen.setdefault(i, []).append(args[0].asnumpy()))
    np.random.seed(4)
    eps = np.random.uniform(size=3).astype('float32')
    np.random.seed(4)
    term.critic_loss.penalty(term.critics, caps)
    real = [m.asnumpy() for m in term.critics.normalise(caps[0].teacher_maps)]
    fake = [m.asnumpy() for m in term.critics.normalise(caps[0].student_maps)]
    step = term.critic_loss.step
    for i in range(NUM_LEVELS):
        plus, minus = seen[i]  # two probes per level: x + h u and x - h u
        t, s = real[i], fake[i]
        diff = (t - s).reshape(3, -1)
        x = ((plus + minus) / 2).reshape(3, -1)
        # x = e t + (1 - e) s, e the drawn interpolation weight of each image
        np.testing.assert_allclose(x, s.reshape(3, -1) + eps[:, None] * diff, rtol=1e-4,
                                   atol=1e-5)
        # the probes lie along t - s, h = step * sqrt(C H W) either side of x
        probe = (plus - minus).reshape(3, -1) / 2
        h = step * math.sqrt(diff.shape[1])
        u = diff / np.linalg.norm(diff, axis=1, keepdims=True)
        np.testing.assert_allclose(probe, h * u, rtol=1e-3, atol=1e-5 * h)


def test_gradient_penalty_slope_is_the_directional_derivative(setup):
    """The finite difference equals autograd's first-order derivative along t - s (with a
    step small enough not to straddle a LeakyReLU's kink)."""
    d = setup
    term = make_term(d, critic='wgan-gp')
    term.critic_loss.step = 1e-4
    real = term.critics.normalise(d['t_maps'])
    fake = term.critics.normalise(perturbed(d['t_maps']))
    eps = mx.nd.array([0.2, 0.5, 0.9])
    for critic, t, s in zip(term.critics.levels, real, fake):
        slope = term.critic_loss.slopes(critic, t, s, eps).asnumpy()
        diff = t - s
        x = s + eps.reshape((-1, 1, 1, 1)) * diff
        x.attach_grad()
        with autograd.record():
            score = critic(x)
        score.backward()
        u = diff.asnumpy().reshape(3, -1)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        exact = np.abs((x.grad.asnumpy().reshape(3, -1) * u).sum(axis=1))
        np.testing.assert_allclose(slope, exact, rtol=2e-2, atol=1e-6)


def _penalty(term, caps, seed=5):
    np.random.seed(seed)
    return sum(p.asscalar() for p in term.critic_loss.penalty(term.critics, caps))


def _scale_scores(term, factor):
    # The score is a 1x1 convolution after the last nonlinearity: D, and its slope
    # everywhere, scale with its weight and bias.
    for critic in term.critics.levels:
        for p in critic.score.collect_params().values():
            p.set_data(p.data() * factor)


def test_gradient_penalty_rises_with_the_slope_and_reaches_the_critic(setup):
    d = setup
    term = make_term(d, critic='wgan-gp', gp_weight=10.0)
    caps = make_caps(d, perturbed(d['t_maps']), ONE)
    fake = term.critics.normalise(caps[0].student_maps)
    real = term.critics.normalise(caps[0].teacher_maps)
    eps = mx.nd.array([0.5] * 3)
    slopes = [term.critic_loss.slopes(c, t, s, eps).asnumpy()
              for c, t, s in zip(term.critics.levels, real, fake)]
    # Bring every level's smallest slope above 1, then steeper still.
    _scale_scores(term, 2.0 / min(s.min() for s in slopes))
    penalties = [_penalty(term, caps)]
    for _ in range(2):
        _scale_scores(term, 2.0)
        penalties.append(_penalty(term, caps))
    assert penalties[0] > 10.0 * NUM_LEVELS * 0.9  # every slope above 2: (slope - 1)^2 > 1
    assert penalties[0] < penalties[1] < penalties[2]
    # A nearly flat critic: two-sided, every image pays (0 - 1)^2; one-sided, nothing.
    _scale_scores(term, 1e-6)
    np.testing.assert_allclose(_penalty(term, caps), 10.0 * NUM_LEVELS, rtol=1e-3)
    one_sided = make_term(d, critic='wgan-gp')
    one_sided.critic_loss = WGANGP(gp_weight=10.0, one_sided=True)
    _scale_scores(one_sided, 1e-6)
    assert _penalty(one_sided, caps) < 1e-6
    # Recorded: its gradient reaches every convolution of every critic.
    _scale_scores(term, 1e6)
    np.random.seed(5)
    with autograd.record():
        penalty = term.critic_loss.penalty(term.critics, caps)[0]
    penalty.backward()
    for name, p in trainable(term.critics.levels.collect_params()).items():
        if name.endswith('weight'):
            assert p.grad().abs().sum().asscalar() > 0, name


# ---------------------------------------------------------------------------- hinge-sn

def test_spectral_norm_of_every_weight_is_one_after_power_iterations(setup, tmp_path):
    d = setup
    term = make_term(d, critic='hinge-sn')
    convs = [b for c in term.critics.levels for b in list(c.body) + [c.score]
             if isinstance(b, SNConv2D)]
    raw = [np.linalg.svd(c.weight.data().asnumpy().reshape(c.weight.shape[0], -1),
                         compute_uv=False)[0] for c in convs]
    assert max(abs(r - 1) for r in raw) > 0.1  # the raw weights are not normalised already
    converge_spectral_norm(term, d, ONE, iterations=100)
    for conv in convs:
        w = conv.normalised_weight().asnumpy()
        sigma = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0]
        assert abs(sigma - 1) < 1e-2, (conv.name, sigma)
    # u is a parameter the optimiser never sees, and checkpoints keep it.
    assert not [k for k in term.weights if k.endswith('_u')]
    us = {k: p for k, p in term.critics.collect_params().items() if k.endswith('_u')}
    assert len(us) == len(convs)
    path = str(tmp_path / 'critics.params')
    term.critics.save_parameters(path)
    other = make_term(d, critic='hinge-sn')
    other.critics.load_parameters(path)
    for (_, a), (_, b) in zip(sorted(us.items()), sorted(
            (k, p) for k, p in other.critics.collect_params().items() if k.endswith('_u'))):
        np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy())


def test_spectral_norm_refuses_to_be_hybridised(setup):
    term = make_term(setup, critic='hinge-sn')
    term.critics.hybridize()
    with pytest.raises(GankdError, match='cannot be hybridised'):
        term.critics(setup['t_maps'])


# ---------------------------------------------------------------------------- inputs

def test_channel_norm_standardises_with_the_teachers_statistics(setup, tmp_path):
    d = setup
    maps = perturbed(d['t_maps'], scale=1.0)  # as teacher maps: channels of any scale
    for devices in (ONE, TWO):
        term = make_term(d, devices, input_norm="channel")
        assert not term.critics.is_calibrated()
        caps = make_caps(d, maps, devices, teacher_maps=maps)
        term.prepare(caps)
        assert term.critics.is_calibrated()
        for level, (block, m) in enumerate(zip(term.critics.standardisers, maps)):
            m = m.asnumpy()
            mean = m.mean(axis=(0, 2, 3))
            std = m.std(axis=(0, 2, 3))
            std = np.maximum(std, 0.01 * std.mean())
            np.testing.assert_allclose(block.mean.data().asnumpy(), mean, rtol=1e-4,
                                       atol=1e-5)
            np.testing.assert_allclose(block.std.data().asnumpy(), std, rtol=1e-3)
            z = term.critics.normalise(maps)[level].asnumpy()
            np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    # Kept in the checkpoint: a new term restored from it does not measure again.
    path = str(tmp_path / 'critics.params')
    term.critics.save_parameters(path)
    restored = make_term(d, ONE, input_norm='channel')
    restored.critics.load_parameters(path)
    assert restored.critics.is_calibrated()
    restored.prepare(make_caps(d, d['t_maps'], ONE))  # other maps: statistics kept
    np.testing.assert_array_equal(restored.critics.standardisers[0].std.data().asnumpy(),
                                  term.critics.standardisers[0].std.data().asnumpy())


def test_channel_norm_floors_dead_channels(setup):
    d = setup
    maps = [m.copy() for m in d['t_maps']]
    maps[0][:, 0] = 3.0  # a constant channel
    term = make_term(d, input_norm='channel')
    term.critics.calibrate([maps])
    std = term.critics.standardisers[0].std.data().asnumpy()
    assert std[0] > 0 and np.isclose(std[0], 0.01 * np.concatenate(
        [[0], maps[0].asnumpy().std(axis=(0, 2, 3))[1:]]).mean(), rtol=1e-3)


def test_critic_levels_only_those_levels_get_critics_and_gradients(setup):
    d = setup
    term = make_term(d, levels=[2, 0])
    assert term.critics.level_ids == [0, 2] and len(term.critics.levels) == 2
    assert term.critics.input_scales.shape == (2,)
    caps = make_caps(d, perturbed(d['t_maps']), ONE)
    term.prepare(caps)
    rms = [np.sqrt((d['t_maps'][i].asnumpy() ** 2).mean()) for i in (0, 2)]
    np.testing.assert_allclose(term.critics.input_scales.data().asnumpy(), rms, rtol=1e-5)
    for m in caps[0].student_maps:
        m.attach_grad()
    with autograd.record():
        loss = term.losses(caps)[0]
    loss.backward()
    has_grad = [bool(m.grad.abs().sum().asscalar() > 0) for m in caps[0].student_maps]
    assert has_grad == [True, False, True, False, False, False]
    assert len(term.critics(caps[0].student_maps)) == 2


# ---------------------------------------------------------------------------- warm-up

def test_warmup_weight_ramps_from_zero_with_the_iteration():
    term = DistillTerm(weight=0.5, warmup=4)
    assert term.weight == 0.5  # outside the loop: the full weight
    ramp = []
    for it in range(7):
        term.set_iteration(it)
        ramp.append(term.weight)
    assert ramp == pytest.approx([0, 0.125, 0.25, 0.375, 0.5, 0.5, 0.5])
    term.weight = 2.0
    term.set_iteration(2)
    assert term.weight == 1.0
    plain = DistillTerm(weight=0.5)
    plain.set_iteration(0)
    assert plain.weight == 0.5


def test_warmup_follows_the_loops_iteration_across_epochs_and_resumes(voc_root, teacher_params,
                                                                      monkeypatch):
    """The loop tells the term the run's iteration; a run resumed at iteration 4 (the
    second epoch) continues the ramp where the first left it."""
    import gankd.train.loop as engine
    from gankd.train.run import build_gankd_run
    from gankd.data.voc import voc_datasets
    train_set, _, classes = voc_datasets(voc_root)
    run = build_gankd_run(TEACHER, STUDENT, DATA_SHAPE, classes, [mx.cpu()],
                          teacher_params=teacher_params, adv_weight=0.3, adv_warmup=6)
    assert run.meta['adv_warmup'] == 6
    seen = []
    monkeypatch.setattr(engine, 'train_step', lambda run, batch, distill=True: (
        seen.append(run.terms[0].weight), {'CrossEntropy': 0.0})[1])
    loader = run.family.train_loader(train_set, run, DATA_SHAPE, 4)
    for epoch, start in ((0, 0), (1, 4)):
        loader.set_epoch(epoch)
        engine.train_one_epoch(run, loader, epoch, log_interval=0, start_iteration=start)
    assert seen == pytest.approx([0.3 * k / 6 for k in range(6)] + [0.3, 0.3])


# ---------------------------------------------------------------------------- composed

def test_new_options_compose_with_a_direct_feature_term_in_training(voc_root, teacher_params,
                                                                     tmp_path):
    """``--distill gan,cosine`` with wgan-gp on per-channel inputs, critics on levels 0
    and 2 and a warm-up, through the script's own code path: the terms are logged, the
    settings recorded, the statistics checkpointed, and the run resumes."""
    import glob
    import json
    from gankd.cli import train_from_args, training_parser
    prefix = str(tmp_path / 'gp')
    argv = ['--teacher', TEACHER, '--student', STUDENT, '--teacher-params', teacher_params,
            '--data-shape', str(DATA_SHAPE), '--dataset-root', voc_root, '--batch-size', '8',
            '-j', '0', '--save-prefix', prefix, '--distill', 'gan,cosine',
            '--distill-weights', '0.5,1', '--critic', 'wgan-gp', '--gp-weight', '5',
            '--critic-norm', 'channel', '--critic-levels', '0,2', '--adv-warmup', '3',
            '--optimizer', 'adam', '--val-interval', '5', '--skip-data-check',
            '--log-interval', '0']
    parser = training_parser('t', distill=True)
    train_from_args(parser.parse_args(argv + ['--epochs', '1']), distill=True)
    with open(prefix + '_history.jsonl') as f:
        record = json.loads(f.readline())
    assert {'Loss_G', 'Loss_cosine', 'Loss_D', 'Loss_D_penalty'} <= set(record)
    assert all(math.isfinite(v) for v in record.values() if isinstance(v, float))
    with open(prefix + '_last.json') as f:
        meta = json.load(f)
    assert (meta['critic'], meta['critic_norm'], meta['critic_levels'], meta['adv_warmup'],
            meta['gp_weight'], meta['critic_bn']) == ('wgan-gp', 'channel', [0, 2], 3, 5.0,
                                                      False)
    ckpt = sorted(glob.glob(prefix + '_ckpt/epoch*'))[-1]
    saved = mx.nd.load(ckpt + '/critics.params')
    assert len([k for k in saved if k.endswith('std')]) == 2
    train_from_args(parser.parse_args(argv + ['--epochs', '2', '--resume', 'auto']),
                    distill=True)
    with open(prefix + '_history.jsonl') as f:
        assert [json.loads(l)['epoch'] for l in f if l.strip()] == [0, 1]
    # The cosine term has no parameters, so the checkpoint's blocks would fit a run
    # without it: the recorded terms refuse that resume instead of mixing two settings.
    gan_only = [a for a in argv if a not in ('gan,cosine', '0.5,1')]
    gan_only[gan_only.index('--distill') + 1:gan_only.index('--distill') + 1] = ['gan']
    gan_only[gan_only.index('--distill-weights') + 1:
             gan_only.index('--distill-weights') + 1] = ['0.5']
    with pytest.raises(GankdError, match='gan 0.5, cosine 1 but this run has gan 0.5'):
        train_from_args(parser.parse_args(gan_only + ['--epochs', '3', '--resume', 'auto']),
                        distill=True)


def test_hinge_sn_composes_with_hint_in_one_train_step(setup):
    from gankd.train.loop import Run, train_step
    from gankd.detectors.ssd.model import copy_head
    from gankd.detectors.ssd.student import build_student
    from gankd.detectors.ssd import SSD
    from gankd.distill import DistillContext, build_terms
    d = setup
    student = build_student(STUDENT, DATA_SHAPE, d['shapes'], ctx=ONE)
    head = copy_head(d['cfg'], d['head'], ctx=ONE)
    context = DistillContext(d['shapes'], ONE, teacher_head=d['head'], family=SSD)
    terms = build_terms(['gan', 'hint'], [1.0, 1.0], context, {'gan': dict(
        width=8, critic='hinge-sn', levels=[1, 3], input_norm='channel', warmup=2)})
    params = list(student.collect_params().values()) + list(head.collect_params().values())
    params += [p for t in terms for p in t.student_params()]
    run = Run(ctx=ONE, family=SSD, backbone=student, head=head, save_block=student, meta={},
              classes=['a', 'b', 'c'], teacher=d['backbone'], terms=terms,
              teacher_head=d['head'], trainer=gluon.Trainer(params, 'sgd',
                                                           {'learning_rate': 0.01}))
    terms[0].set_iteration(1)
    before = snapshot(student)
    values = train_step(run, (d['x'][:2], d['cls_t'][:2], d['box_t'][:2]))
    assert all(math.isfinite(v) for v in values.values())
    assert values['Loss_hint'] > 0 and 'Loss_G' in values and 'Loss_D' in values
    after = snapshot(student)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
