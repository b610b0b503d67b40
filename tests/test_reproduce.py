"""The reproduction grid, its report and the published numbers, run as a user runs them."""
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA_SHAPE, ROOT, run_script

METHOD_DOC = ROOT.parent / 'shared' / 'gankd-method.md'
TINY = ['--data-shape', DATA_SHAPE, '--batch-size', 4, '-j', 0, '--epochs', 1,
        '--teacher-epochs', 1, '--optimizer', 'adam', '--augment', 'light']


def _png_size(path):
    """Width and height from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', path
    assert data[12:16] == b'IHDR', path
    return struct.unpack('>II', data[16:24])


def _records(path):
    return {r['key']: r for r in json.load(open(path))['records']}


def test_grid_runs_skips_resumes_and_reports(voc_root, tmp_path):
    out, work = tmp_path / 'r.json', tmp_path / 'work'
    grid = ['--dataset-root', voc_root, '--teachers', 'none,mobilenet0.25',
            '--students', 'mobilenet0.25', '--seeds', '0,1', '--out', out,
            '--work-dir', work] + TINY
    proc = run_script('reproduce.py', *grid)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = _records(out)
    keys = {'teacher/mobilenet0.25/seed233'} | {
        'mobilenet0.25/{}/seed{}'.format(cell, s) for cell in ('none/baseline',
                                                               'mobilenet0.25/gan')
        for s in (0, 1)}
    assert set(records) == keys
    classes = (Path(voc_root) / 'classes.txt').read_text().split()
    for r in records.values():
        assert r['status'] == 'ok', r
        assert 0.0 <= r['mAP'] <= 1.0
        assert sorted(r['per_class']) == sorted(classes)
        assert Path(r['params']).is_file() and Path(r['history']).is_file()
        assert r['command'][0] == sys.executable and r['seconds'] > 0
        assert '--resume auto' in r['command_line']
    gan = records['mobilenet0.25/mobilenet0.25/gan/seed1']
    assert Path(gan['command'][1]).name == 'train_gankd_ssd.py'
    assert gan['params'].endswith('_last.params')
    assert records['teacher/mobilenet0.25/seed233']['params'] in gan['command']
    assert Path(records['mobilenet0.25/none/baseline/seed0']['command'][1]).name == \
        'train_ssd.py'

    # Again: every cell is done, nothing is trained and the results are not rewritten.
    before, mtime, tic = out.read_bytes(), out.stat().st_mtime_ns, time.time()
    again = run_script('reproduce.py', *grid)
    assert again.returncode == 0, again.stderr[-2000:]
    assert time.time() - tic < 20
    assert '5 done before, 0 finished now, 0 failed' in again.stdout
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime

    # A cell missing from the results (the grid stopped before recording it) runs again,
    # resuming its own finished checkpoint.
    data = json.load(open(out))
    data['records'] = [r for r in data['records']
                       if r['key'] != 'mobilenet0.25/none/baseline/seed1']
    out.write_text(json.dumps(data))
    resumed = run_script('reproduce.py', *grid)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert '4 done before, 1 finished now, 0 failed' in resumed.stdout
    assert set(_records(out)) == keys

    # Weights are not committed with the results: on a fresh machine (no teacher params,
    # no checkpoints) a finished teacher is trained again; finished students are not.
    teacher_params = records['teacher/mobilenet0.25/seed233']['params']
    shutil.rmtree(os.path.dirname(teacher_params))
    fresh = run_script('reproduce.py', *grid)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert 'is missing; training it again' in fresh.stdout
    assert os.path.exists(teacher_params) and set(_records(out)) == keys
    # The students keep their numbers, and name the teacher training they learnt from;
    # that training's record is kept, out of the tables, under "retired".
    from gankd.train.checkpoint import file_sha256
    data = json.load(open(out))
    first = records['teacher/mobilenet0.25/seed233']
    assert [r['params_sha256'] for r in data['retired']] == [first['params_sha256']]
    assert 'is missing' in data['retired'][0]['retired_because']
    for s in (0, 1):
        gan = _records(out)['mobilenet0.25/mobilenet0.25/gan/seed{}'.format(s)]
        assert gan['teacher_params_sha256'] == first['params_sha256']
        assert gan['teacher_mAP'] == first['mAP']
    second = _records(out)['teacher/mobilenet0.25/seed233']
    assert second['params_sha256'] == file_sha256(teacher_params)
    # Weights on disk that are not the recorded ones (another machine's training left
    # beside these results) are not taken for the recorded teacher: its record is
    # retired and the teacher's finished training evaluated again.
    data['records'] = [dict(r, params_sha256='0' * 64) if r['key'] == second['key'] else r
                       for r in data['records']]
    out.write_text(json.dumps(data))
    swapped = run_script('reproduce.py', *grid)
    assert swapped.returncode == 0, swapped.stderr[-2000:]
    assert 'another training (their SHA-256 differs); training it again' in swapped.stdout
    data = json.load(open(out))
    assert [r['params_sha256'] for r in data['retired']] == [first['params_sha256'],
                                                               '0' * 64]
    third = _records(out)['teacher/mobilenet0.25/seed233']
    assert third['params_sha256'] == second['params_sha256'] and \
        third['mAP'] == second['mAP']

    # A recipe changed since (one more student flag): its cells are refused in one line;
    # with --retire-changed a dry run lists them to run again and writes nothing.
    changed = grid + ['--extra-flags', '--warmup-iters 2']
    refused = run_script('reproduce.py', *changed, '--dry-run')
    assert refused.returncode != 0 and 'Traceback' not in refused.stderr
    assert 'run with other flags' in refused.stderr and '--retire-changed' in refused.stderr
    before = out.read_bytes()
    dry = run_script('reproduce.py', *changed, '--retire-changed', '--dry-run')
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert 'dry run: 5 cells, 1 done' in dry.stdout  # the teacher's flags did not change
    assert dry.stdout.count('--warmup-iters 2') == 4 and out.read_bytes() == before

    rep = run_script('report.py', '--results', out, '--out-dir', tmp_path / 'rep',
                     '--name', 'tiny')
    assert rep.returncode == 0, rep.stderr[-2000:]
    text = (tmp_path / 'rep' / 'tiny.md').read_text()
    assert '| student | teacher: none | teacher: mobilenet0.25 (gan) | gain over none |' in text
    base = [100 * records['mobilenet0.25/none/baseline/seed{}'.format(s)]['mAP'] for s in (0, 1)]
    row = re.search(r'^\| mobilenet0\.25 \| ([\d.]+) ± [\d.]+ \(n=2\) \| [\d.]+ ± [\d.]+ '
                    r'\(n=2\) \| [+-][\d.]+ ± [\d.]+ \(2 pairs\) \| [^|]+ \|$', text, re.M)
    assert row, text
    assert abs(float(row.group(1)) - sum(base) / 2) < 0.051
    assert 'published (quoted, not reproduced)' in text
    # The three trainings of the teacher, oldest first; the students learnt from the first.
    trainings = text[text.index('### Trainings of the teachers'):].split('\n\n')[2]
    rows = trainings.splitlines()[2:]
    assert len(rows) == 3, trainings
    assert '`{}`'.format(first['params_sha256'][:12]) in rows[0] and '| 2 |' in rows[0]
    assert 'retired: ' in rows[1] and rows[2].endswith('| current |'), trainings
    pngs = [Path(l.split(': ', 1)[1]) for l in rep.stdout.splitlines() if l.startswith('figure')]
    names = {p.name for p in pngs}
    assert {'tiny_map.png', 'tiny_gain.png', 'mobilenet0.25_mobilenet0.25_gan.png',
            'mobilenet0.25_none_baseline.png', 'teacher_mobilenet0.25.png'} <= names
    for p in pngs:
        w, h = _png_size(p)
        assert w > 100 and h > 100
        assert '({})'.format(p.relative_to(tmp_path / 'rep')) in text


def test_failed_cell_is_recorded_and_the_grid_goes_on(voc_root, teacher_params, tmp_path):
    # A resnet10_v1_0.5 teacher file passed off as mobilenet0.25: every GAN-KD training
    # refuses it, and the grid records each failure and goes on to the next cell.
    out = tmp_path / 'r.json'
    proc = run_script('reproduce.py', '--dataset-root', voc_root, '--teachers', 'mobilenet0.25',
                      '--teacher-params', 'mobilenet0.25={}'.format(teacher_params),
                      '--students', 'mobilenet0.25', '--seeds', '0,1', '--out', out,
                      '--work-dir', tmp_path / 'work', *TINY)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout.count('FAILED') == 2, proc.stdout
    records = _records(out)
    assert records['teacher/mobilenet0.25/seed233']['status'] == 'ok'
    assert records['teacher/mobilenet0.25/seed233']['command'] is None
    for seed in (0, 1):
        r = records['mobilenet0.25/mobilenet0.25/gan/seed{}'.format(seed)]
        assert r['status'] == 'failed' and r['mAP'] is None
        assert r['returncode'] == 2 and 'error' in r['error'], r
    rep = run_script('report.py', '--results', out, '--out-dir', tmp_path / 'rep')
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert '## Failed cells' in (tmp_path / 'rep' / 'r.md').read_text()


def _record(student, teacher, method, seed, m_ap, status='ok'):
    role = 'baseline' if teacher == 'none' else 'distill'
    return {'key': '{}/{}/{}/seed{}'.format(student, teacher, method, seed), 'role': role,
            'student': student, 'teacher': teacher, 'method': method, 'seed': seed,
            'status': status, 'mAP': m_ap, 'history': None}


def test_report_arithmetic(tmp_path):
    from gankd.experiments.report import write_report
    from gankd.experiments.stats import summarize
    records = [_record('mobilenet1.0', 'none', 'baseline', s, v)
               for s, v in zip((0, 1, 2), (0.30, 0.32, 0.34))]
    records += [_record('mobilenet1.0', 'resnet50_v1', 'gan', s, v)
                for s, v in zip((0, 1, 2), (0.33, 0.36, 0.35))]
    records += [_record('mobilenet1.0', 'resnet50_v1', 'hint', 0, 0.31)]
    # Seeds that do not pair: the gain is a difference of means, flagged as unpaired.
    records += [_record('resnet18_v1', 'none', 'baseline', 0, 0.20),
                _record('resnet18_v1', 'resnet50_v1', 'gan', 1, 0.25),
                _record('resnet18_v1', 'resnet50_v1', 'gan', 2, 0.27),
                _record('resnet18_v1', 'resnet50_v1', 'gan', 3, None, status='failed')]
    records.append({'key': 'teacher/resnet50_v1/seed233', 'role': 'teacher', 'student': None,
                    'teacher': 'resnet50_v1', 'method': None, 'seed': 233, 'status': 'ok',
                    'mAP': 0.5, 'history': None})
    s = summarize(records)
    base = s['cells']['mobilenet1.0|none|baseline']
    gan = s['cells']['mobilenet1.0|resnet50_v1|gan']
    assert (base['mean'], base['n']) == (pytest.approx(32.0), 3)
    assert base['std'] == pytest.approx(2.0)
    assert gan['mean'] == pytest.approx(104 / 3) and gan['std'] == pytest.approx(math.sqrt(7 / 3))
    gain = s['gains']['mobilenet1.0|resnet50_v1|gan']  # per-seed differences 3, 4, 1
    assert gain == {'mean': pytest.approx(8 / 3), 'std': pytest.approx(math.sqrt(7 / 3)),
                    'n': 3, 'paired': True}
    assert s['gains']['mobilenet1.0|resnet50_v1|hint'] == {
        'mean': pytest.approx(1.0), 'std': None, 'n': 1, 'paired': True}
    unpaired = s['gains']['resnet18_v1|resnet50_v1|gan']
    assert unpaired['mean'] == pytest.approx(6.0) and not unpaired['paired']
    assert len(s['failed']) == 1

    results = tmp_path / 'hand.json'
    results.write_text(json.dumps({'records': records}))
    text = Path(write_report(str(results), str(tmp_path / 'rep'))['report']).read_text()
    # Gap closed: (34.67 - 32) / (50 - 32) = 15%, (26 - 20) / (50 - 20) = 20%.
    assert ('| mobilenet1.0 | 32.0 ± 2.0 (n=3) | 34.7 ± 1.5 (n=3) | +2.7 ± 1.5 (3 pairs) | '
            '15% |') in text
    assert '| resnet18_v1 | 20.0 (n=1) | 26.0 ± 1.4 (n=2) | +6.0 (unpaired) | 20% |' in text
    # A teacher no better than the baseline leaves no gap to close.
    from gankd.experiments.stats import gap_closed
    weak = [dict(r, mAP=0.25) if r['role'] == 'teacher' else r for r in records]
    assert gap_closed(summarize(weak), 'mobilenet1.0', 'resnet50_v1', 'gan') is None
    assert gap_closed(summarize(weak), 'resnet18_v1', 'resnet50_v1', 'gan') == pytest.approx(
        6 / 5)
    # Beside Table 1's MobileNetV1 none -> ResNet50: 75.4 -> 77.7, +2.3.
    assert re.search(r'^\| mobilenet1\.0 \| resnet50_v1 \| \+2\.7 ± 1\.5 \(3 pairs\) \| '
                     r'\+1\.0 \(1 pair\) \| \+2\.3 \| MobileNetV1, ResNet50 \|$', text, re.M)
    # The methods table. Hint's gap uses its paired gain (seed 0: 31 - 30), not the means
    # over other seeds (31 - 32): +1 / (50 - 32) = 6%.
    assert '| hint | 31.0 (n=1) | +1.0 (1 pair) | 6% |' in text
    assert text.index('## Methods') < text.index('## Measured, laid out like Table 1')
    assert 'laid out like Table 1 (method: hint)' not in text
    assert '| resnet50_v1 | 50.0 (n=1) | ssd_512_resnet50_v1_voc 80.1 |' in text


def test_report_reads_the_last_training_cross_entropy_from_the_histories(tmp_path):
    from gankd.experiments.report import write_report
    from gankd.experiments.stats import summarize
    records = []
    for i, (method, ces) in enumerate([('baseline', (5.0, 4.0)), ('gan', (6.0, 4.5)),
                                       ('gan', (6.0, 4.7))]):
        teacher = 'none' if method == 'baseline' else 'resnet50_v1'
        seed = 0 if i < 2 else 1
        history = tmp_path / 'h{}.jsonl'.format(i)
        history.write_text('\n'.join(json.dumps({'epoch': e, 'CrossEntropy': ce})
                                     for e, ce in enumerate(ces)) + '\n')
        records.append(dict(_record('mobilenet1.0', teacher, method, seed, 0.3),
                            history=str(history)))
    cells = summarize(records)['cells']
    assert cells['mobilenet1.0|none|baseline']['train_ce'] == {'mean': 4.0, 'std': None,
                                                               'n': 1}
    gan = cells['mobilenet1.0|resnet50_v1|gan']['train_ce']
    assert gan['mean'] == pytest.approx(4.6) and gan['n'] == 2
    records.append(_record('mobilenet1.0', 'resnet50_v1', 'hint', 0, 0.3))  # no history
    results = tmp_path / 'r.json'
    results.write_text(json.dumps({'records': records}))
    text = Path(write_report(str(results), str(tmp_path / 'rep'))['report']).read_text()
    assert re.search(r'^\| gan \| .* \| 4\.60 ± 0\.14 \(n=2\) \|$', text, re.M)
    assert re.search(r'^\| hint \| .* \| – \|$', text, re.M)


def _doc_table1():
    """Table 1 as ../shared/gankd-method.md prints it: row -> [cells]."""
    text = METHOD_DOC.read_text()
    block = text[text.index('Table 1,'):text.index('Table 2,')]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('| ') and cells[0] not in ('student', '---'):
            rows[cells[0]] = [None if c == '-' else float(c) for c in cells[1:]]
    return rows


def test_published_numbers_are_those_of_the_method_doc():
    from gankd.experiments.published import (MODEL_ZOO, TABLE1, TABLE2, TABLE3,
                                             format_published, published_gain,
                                             published_name, published_value)
    if METHOD_DOC.exists():
        assert _doc_table1() == {r: list(v) for r, v in TABLE1.rows.items()}
    assert published_value('mobilenet1.0', 'none') == 75.4
    assert published_value('mobilenetv2_1.0', 'resnet101_v2') == 77.5
    assert published_value('resnet18_v1', 'ResNet50 + cosine attention') is None
    assert published_gain('resnet18_v1', 'resnet50_v1') == 2.8
    assert published_gain('mobilenet0.25', 'resnet50_v1') is None  # not the published width
    assert published_gain('mobilenet0.25', 'resnet50_v1', exact=False) == 2.3
    assert published_name('mobilenet0.25', exact=False, kind='row') == ('MobileNetV1', False)
    assert [format_published(v) for v in TABLE2.rows['MobileNetV1_0.75']] == ['18', '23']
    assert published_value('mobilenet1.0', 'resnet50_v1', 'table2') == 25.4
    assert TABLE3.value('ResNet50 + RoIAlign', 'ResNet101') == 74.0
    assert TABLE3.rows['ResNet50 + RoIPooling'] == (67.0, 72.0)
    assert MODEL_ZOO == {'ssd_512_resnet50_v1_voc': 80.1, 'ssd_512_mobilenet1.0_voc': 75.4}


def test_preset_dry_run_prints_commands_and_runs_nothing(tmp_path):
    from gankd.experiments.presets import MINI_VOC
    work = tmp_path / 'work'
    proc = run_script('reproduce.py', '--preset', 'mini-voc', '--dry-run', '--work-dir', work,
                      '--out', tmp_path / 'r.json')
    assert proc.returncode == 0, proc.stderr[-2000:]
    n = 1 + len(MINI_VOC.students) * len(MINI_VOC.seeds) * (1 + len(MINI_VOC.methods))
    lines = [l for l in proc.stdout.splitlines() if l.startswith('[')]
    teacher = [t for t in MINI_VOC.teachers if t != 'none'][0]
    assert len(lines) == n and lines[0].startswith('[1/{}] teacher/{}/seed233: '
                                                   .format(n, teacher))
    assert all('--resume auto' in l for l in lines)
    assert not (tmp_path / 'r.json').exists() and not (work / 'data').exists()


def test_any_registered_term_is_a_method_without_an_entry(tmp_path):
    """``--methods cosine,gan+cosine+soft``: registered terms need no METHODS entry; an
    unregistered name is still refused."""
    proc = run_script('reproduce.py', '--preset', 'mini-voc', '--dry-run', '--work-dir',
                      tmp_path / 'work', '--out', tmp_path / 'r.json', '--methods',
                      'cosine,gan+cosine+soft', '--seeds', '0')
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith('[')]
    assert any('/cosine/seed0' in l and l.endswith('--distill cosine') for l in lines)
    assert any('/gan+cosine+soft/seed0' in l and l.endswith('--distill gan,cosine,soft')
               for l in lines)
    proc = run_script('reproduce.py', '--preset', 'mini-voc', '--dry-run', '--work-dir',
                      tmp_path / 'work', '--out', tmp_path / 'r.json', '--methods', 'cosinne')
    assert proc.returncode == 2 and 'unknown method' in proc.stderr


def test_ablation_preset_variants_replace_the_flag_they_change(tmp_path):
    from gankd.experiments.presets import GAN_VARIANTS
    proc = run_script('reproduce.py', '--preset', 'mini-voc-ablation', '--dry-run',
                      '--work-dir', tmp_path / 'work', '--out', tmp_path / 'r.json')
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith('[')]
    for name, flags in GAN_VARIANTS.items():
        cells = [l for l in lines if '/{}/seed'.format(name) in l]
        assert len(cells) == 3, name
        for line in cells:
            words = line.split()
            assert words[-len(flags):] == list(flags)
            assert words.count(flags[0]) == 1   # e.g. --gan-epochs 4 alone, not 8 then 4


def test_critic_and_trio_presets_share_their_baselines_and_gan_cells_with_mini_voc_res(tmp_path):
    # Issue 12's ablation reuses mini-voc-res's trainings in the same --work-dir: the
    # cells both have must be the same commands; each variant adds its flags once.
    from gankd.experiments.presets import CRITIC_VARIANTS
    commands = {}
    for preset in ('mini-voc-res', 'mini-voc-res-critics', 'mini-voc-res-gan-cosine'):
        proc = run_script('reproduce.py', '--preset', preset, '--dry-run', '--work-dir',
                          tmp_path / 'work', '--out', tmp_path / (preset + '.json'))
        assert proc.returncode == 0, proc.stderr[-2000:]
        commands[preset] = dict(re.match(r'\[\d+/\d+\] (\S+): (.*)$', l).groups()
                                for l in proc.stdout.splitlines() if l.startswith('['))
    res, critics = commands['mini-voc-res'], commands['mini-voc-res-critics']
    shared = set(res) & set(critics)
    assert {'resnet10_v1_0.25/none/baseline/seed2', 'resnet10_v1_0.25/resnet18_v1/gan/seed1',
            'resnet10_v1_0.25/resnet18_v1/gan-published/seed0',
            'teacher/resnet18_v1/seed233'} <= shared
    assert all(res[k] == critics[k] for k in shared)
    gan = critics['resnet10_v1_0.25/resnet18_v1/gan/seed0'].split()
    for name, flags in CRITIC_VARIANTS.items():
        words = critics['resnet10_v1_0.25/resnet18_v1/{}/seed0'.format(name)].split()
        # The default gan cell's command (its own paths), then the variant's flags.
        assert [w.replace(name, 'gan') for w in words] == gan + list(flags), name
    # The full-trio run of gan+cosine: every student and seed, the cheapest student's
    # cells being the critic preset's own, and nothing of mini-voc-res changed.
    trio = commands['mini-voc-res-gan-cosine']
    assert all(res[k] == trio[k] for k in set(res) & set(trio))
    assert all(critics[k] == trio[k] for k in set(critics) & set(trio))
    for student in ('resnet10_v1_0.25', 'resnet10_v1_0.5', 'resnet18_v1_0.5'):
        for seed in (0, 1, 2):
            cell = '{}/resnet18_v1/{{}}/seed{}'.format(student, seed)
            assert cell.format('gan') in res
            gan_words = res[cell.format('gan')].split()
            assert gan_words[-2:] == ['--distill', 'gan']
            assert trio[cell.format('gan+cosine')].split() == [
                w.replace('-gan-', '-gan+cosine-') for w in gan_words[:-2]
            ] + ['--distill', 'gan,cosine']


def test_cells_write_out_gankd_and_count_records_made_when_it_was_the_default(tmp_path):
    """train_gankd_ssd.py's default became GAN-KD plus a cosine term (``--recipe best``), so
    a method whose flags name no terms gets ``--distill gan`` written out. Its records from
    before, which left it implicit, are still done; a record with any other flags is not."""
    from gankd.experiments.results_file import RESULTS_FORMAT
    out = tmp_path / 'r.json'
    grid = ['--preset', 'mini-voc-res-critics', '--dry-run', '--work-dir', tmp_path / 'work',
            '--out', out, '--seeds', '0', '--students', 'resnet10_v1_0.25', '--methods',
            'gan,gan-published,gan+cosine']

    def cells():
        proc = run_script('reproduce.py', *grid)
        assert proc.returncode == 0, proc.stderr[-2000:]
        cell = r'\[\d+/\d+\] resnet10_v1_0\.25/resnet18_v1/(\S+)/seed0: (.*)$'
        return proc, dict(re.match(cell, l).groups() for l in proc.stdout.splitlines()
                          if re.match(cell, l) and 'skipped' not in l)
    _, commands = cells()
    words = {m: c.split() for m, c in commands.items()}
    assert words['gan'][-2:] == ['--distill', 'gan']
    assert words['gan-published'][-4:] == ['--distill', 'gan', '--adv-weight', '1']
    assert words['gan+cosine'][-2:] == ['--distill', 'gan,cosine']
    assert all(w.count('--distill') == 1 for w in words.values())

    def implicit(method):   # the flags the cell had before: no --distill gan
        w = words[method][2:]
        i = w.index('--distill')
        return w[:i] + w[i + 2:]

    def record(method, flags):
        return {'key': 'resnet10_v1_0.25/resnet18_v1/{}/seed0'.format(method), 'status': 'ok',
                'mAP': 0.3, 'select': 'last', 'flags': flags}
    out.write_text(json.dumps({'format': RESULTS_FORMAT, 'name': 'r', 'records': [
        record('gan', implicit('gan')), record('gan-published', implicit('gan-published'))]}))
    proc, commands = cells()
    assert set(commands) == {'gan+cosine'}   # the other two are done
    assert proc.stdout.count('done (mAP=0.3000), skipped') == 2
    # A method with its own terms had them written out before too: no implicit form.
    out.write_text(json.dumps({'format': RESULTS_FORMAT, 'name': 'r', 'records': [
        record('gan+cosine', implicit('gan+cosine'))]}))
    refused = run_script('reproduce.py', *grid)
    assert refused.returncode == 2 and 'run with other flags' in refused.stderr


def test_faster_rcnn_preset_runs_faster_rcnn_scripts_with_equal_student_flags(tmp_path):
    # mini-voc-frcnn (issue 14's mini Table 3): every cell is a Faster R-CNN training,
    # and a seed's baseline and distilled students differ only in the distillation flags.
    proc = run_script('reproduce.py', '--preset', 'mini-voc-frcnn', '--dry-run', '--work-dir',
                      tmp_path / 'work', '--out', tmp_path / 'frcnn.json')
    assert proc.returncode == 0, proc.stderr[-2000:]
    cells = dict(re.match(r'\[\d+/\d+\] (\S+): (.*)$', l).groups()
                 for l in proc.stdout.splitlines() if l.startswith('['))
    assert set(cells) == {'teacher/resnet18_v1b/seed233'} | {
        'resnet10_v1b/{}/seed{}'.format(m, s) for s in (0, 1, 2)
        for m in ('none/baseline', 'resnet18_v1b/gan', 'resnet18_v1b/chen',
                  'resnet18_v1b/gan-bn', 'resnet18_v1b/teacher-head',
                  'resnet18_v1b/gan-bn-fresh-head')}
    teacher = cells['teacher/resnet18_v1b/seed233'].split()
    assert os.path.basename(teacher[1]) == 'train_faster_rcnn.py'

    def flags(key, drop):
        words = cells[key].split()
        pairs = dict(zip(words[2::2], words[3::2]))
        return words[1], {k: v for k, v in pairs.items() if k not in drop}
    paths = ('--save-prefix',)
    script, base = flags('resnet10_v1b/none/baseline/seed0', paths + ('--network',))
    assert os.path.basename(script) == 'train_faster_rcnn.py'
    for method, extra in (('gan', {'--distill': 'gan'}),
                          ('chen', {'--distill': 'hint,soft,bounded'})):
        script, distilled = flags('resnet10_v1b/resnet18_v1b/{}/seed0'.format(method),
                                  paths + ('--student', '--teacher', '--teacher-params'))
        assert os.path.basename(script) == 'train_gankd_faster_rcnn.py'
        assert distilled == dict(base, **extra), method
        assert '--teacher-params {}'.format(
            teacher[teacher.index('--save-prefix') + 1] + '_best.params') in cells[
                'resnet10_v1b/resnet18_v1b/{}/seed0'.format(method)]
    assert cells['resnet10_v1b/resnet18_v1b/gan-bn/seed0'] == \
        cells['resnet10_v1b/resnet18_v1b/gan/seed0'].replace('-gan-', '-gan-bn-') + ' --critic-bn'


def test_preset_data_is_generated_once(tmp_path):
    from gankd.errors import GankdError
    from gankd.experiments.presets import MINI_VOC, SyntheticSpec
    from gankd.experiments.reproduce import preset_data
    from dataclasses import replace
    small = replace(MINI_VOC, data=SyntheticSpec(num_train=4, num_test=2, image_size=64))
    root = preset_data(small, str(tmp_path), dry_run=False)
    stamp = (Path(root) / 'classes.txt').stat().st_mtime_ns
    assert preset_data(small, str(tmp_path), dry_run=False) == root
    assert (Path(root) / 'classes.txt').stat().st_mtime_ns == stamp  # reused, not redone
    other = replace(small, data=SyntheticSpec(num_train=5, num_test=2, image_size=64))
    with pytest.raises(GankdError, match='other synthetic data'):
        preset_data(other, str(tmp_path), dry_run=False)


def test_preset_data_has_the_presets_classes_and_other_classes_are_refused(tmp_path):
    from gankd.errors import GankdError
    from gankd.experiments.presets import MINI_VOC_RES
    from gankd.experiments.reproduce import preset_data
    from dataclasses import replace
    small = replace(MINI_VOC_RES, data=replace(MINI_VOC_RES.data, num_train=4, num_test=2))
    root = preset_data(small, str(tmp_path), dry_run=False)
    assert (Path(root) / 'classes.txt').read_text().split() == list(MINI_VOC_RES.data.classes)
    other = replace(small, data=replace(small.data, classes=('circle', 'cross')))
    with pytest.raises(GankdError, match='other synthetic data'):
        preset_data(other, str(tmp_path), dry_run=False)


@pytest.mark.parametrize('script,args,message', [
    ('reproduce.py', ['--students', 'nonet', '--dataset-root', '.'], 'unknown network'),
    ('reproduce.py', ['--preset', 'nope'], 'unknown --preset'),
    ('reproduce.py', ['--students', 'mobilenet0.25', '--dataset-root', '.', '--methods', 'x'],
     'unknown method'),
    ('reproduce.py', ['--students', 'mobilenet0.25', '--dataset-root', '.',
                      '--extra-flags', '--bogus 1'], 'unrecognized arguments: --bogus'),
    ('report.py', ['--results', 'missing.json'], 'no such file'),
])
def test_bad_input_is_one_line(tmp_path, script, args, message):
    proc = run_script(script, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_plan_runs_students_whole_and_restricts_methods_and_controls(tmp_path):
    """Students in the order given, each whole (seeds, baseline, methods) before the next;
    a method limited to some students; a control's student that is not a Table 1 student
    gets its baseline and the control only; a random teacher is its initial weights."""
    from gankd.experiments.grid import Grid, METHODS, plan
    grid = Grid(name='g', dataset_root=str(tmp_path), teachers=('none', 'resnet18_v1',
                                                                'resnet18_v1@random'),
                students=('mobilenet0.25', 'mobilenet1.0'), methods=('gan', 'hint',
                                                                     'control-hint'),
                seeds=(0, 1), teacher_flags={'epochs': 3, 'val-interval': 1},
                student_flags={'epochs': 2, 'gan-epochs': 2}, out=str(tmp_path / 'r.json'),
                work_dir=str(tmp_path / 'w'),
                methods_flags=dict(METHODS, **{'control-hint': ('--distill', 'hint',
                                                                '--det-weight', '0')}),
                method_students={'hint': ('mobilenet0.25',),
                                 'control-hint': ('resnet18_v1',)},
                teacher_methods={'resnet18_v1@random': ('gan',)},
                teacher_students={'resnet18_v1@random': ('mobilenet0.25',)},
                student_overrides={'mobilenet0.25': {'epochs': 4}},
                student_seeds={'resnet18_v1': (0, 5)})
    cells = plan(grid)
    keys = [c.key for c in cells]
    assert keys[:2] == ['teacher/resnet18_v1/seed233', 'teacher/resnet18_v1@random/seed233']
    per_student = [k.split('/')[0] for k in keys[2:]]
    # The control's student first: the controls decide what the rest means.
    assert per_student == sorted(per_student, key=['resnet18_v1', 'mobilenet0.25',
                                                   'mobilenet1.0'].index)
    assert keys[6:11] == ['mobilenet0.25/none/baseline/seed0',
                         'mobilenet0.25/resnet18_v1/gan/seed0',
                         'mobilenet0.25/resnet18_v1/hint/seed0',
                         'mobilenet0.25/resnet18_v1@random/gan/seed0',
                         'mobilenet0.25/none/baseline/seed1']
    assert [k for k in keys if k.startswith('mobilenet1.0/')] == [
        'mobilenet1.0/none/baseline/seed0', 'mobilenet1.0/resnet18_v1/gan/seed0',
        'mobilenet1.0/none/baseline/seed1', 'mobilenet1.0/resnet18_v1/gan/seed1']
    assert keys[2:6] == [
        'resnet18_v1/none/baseline/seed0', 'resnet18_v1/resnet18_v1/control-hint/seed0',
        'resnet18_v1/none/baseline/seed5', 'resnet18_v1/resnet18_v1/control-hint/seed5']
    random = cells[1]
    flags = random.command[2:]
    assert flags[flags.index('--network') + 1] == 'resnet18_v1'
    assert flags[flags.index('--epochs') + 1] == '0' and '--val-interval' not in flags
    assert random.params.endswith('_last.params')
    distilled = next(c for c in cells if c.key == 'mobilenet0.25/resnet18_v1@random/gan/seed0')
    assert distilled.command[distilled.command.index('--teacher') + 1] == 'resnet18_v1'
    assert distilled.command[distilled.command.index('--teacher-params') + 1] == random.params
    # The student's own flags reach its baseline and its distilled cells alike.
    for c in cells:
        if c.student:
            epochs = c.command[c.command.index('--epochs') + 1]
            assert epochs == ('4' if c.student == 'mobilenet0.25' else '2'), c.key


def test_method_seeds_add_seeds_to_one_method_and_its_baseline(tmp_path):
    """A control confirmed at more seeds than its student's other controls: that method
    alone runs at them, and the student's baseline too, so every gain pairs by seed."""
    from gankd.experiments.grid import Grid, METHODS, plan
    control = ('--distill', 'hint', '--det-weight', '0')
    grid = Grid(name='g', dataset_root=str(tmp_path), teachers=('none', 'resnet18_v1'),
                students=('mobilenet0.25',), methods=('gan', 'control-a', 'control-b'),
                seeds=(0,), teacher_flags={'epochs': 1}, student_flags={'epochs': 1},
                out=str(tmp_path / 'r.json'), work_dir=str(tmp_path / 'w'),
                methods_flags=dict(METHODS, **{'control-a': control, 'control-b': control}),
                method_students={'control-a': ('resnet18_v1',),
                                 'control-b': ('resnet18_v1',)},
                student_seeds={'resnet18_v1': (0,)}, method_seeds={'control-b': (0, 2)})
    keys = [c.key for c in plan(grid)]
    assert keys == ['teacher/resnet18_v1/seed233',
                    'resnet18_v1/none/baseline/seed0',
                    'resnet18_v1/resnet18_v1/control-a/seed0',
                    'resnet18_v1/resnet18_v1/control-b/seed0',
                    'resnet18_v1/none/baseline/seed2',
                    'resnet18_v1/resnet18_v1/control-b/seed2',
                    'mobilenet0.25/none/baseline/seed0',
                    'mobilenet0.25/resnet18_v1/gan/seed0']
    # Without the method in the grid (--methods), its seeds add nothing.
    grid.methods = ('gan', 'control-a')
    assert 'resnet18_v1/none/baseline/seed2' not in [c.key for c in plan(grid)]


def test_epochs_zero_writes_the_initial_weights(tmp_path, voc_root):
    prefix = str(tmp_path / 'random')
    proc = run_script('train_ssd.py', '--network', 'mobilenet0.25', '--data-shape', DATA_SHAPE,
                      '--dataset-root', voc_root, '--epochs', 0, '-j', 0, '--batch-size', 8,
                      '--save-prefix', prefix)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'saved the initial weights' in proc.stderr
    ev = run_script('eval_voc.py', '--params', prefix + '_last.params', '--dataset-root',
                    voc_root)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert 0.0 <= float(ev.stdout.strip().splitlines()[-1].split('=')[1]) < 0.1


def test_report_says_whether_the_benchmark_can_measure():
    from gankd.experiments.stats import summarize
    from gankd.experiments.tables import validity_markdown
    teacher = {'key': 'teacher/resnet18_v1/seed233', 'role': 'teacher', 'student': None,
               'teacher': 'resnet18_v1', 'method': None, 'seed': 233, 'status': 'ok',
               'mAP': 0.45, 'history': None}
    small = [_record('a', 'none', 'baseline', s, v) for s, v in enumerate((0.305, 0.31, 0.32))]
    small += [_record('a', 'resnet18_v1', 'gan', s, 0.33) for s in range(3)]
    rows = lambda records: {l.split(' | ')[0][2:]: l for l in  # noqa: E731
                            validity_markdown(summarize(records)) if l.startswith('| ')}
    # a: 31.2 ± 0.8 over 3 seeds, 13.8 below the teacher: every criterion met.
    text = validity_markdown(summarize(small + [teacher]))
    assert rows(small + [teacher])['a'] == '| a | 31.2 ± 0.8 (n=3) | yes | yes | yes (+13.8) |'
    assert '**Can measure: yes.**' in text
    # No teacher yet, and b with two seeds: not shown yet, not failed.
    two = [_record('b', 'none', 'baseline', s, v) for s, v in enumerate((0.33, 0.36))]
    text = validity_markdown(summarize(small + two))
    assert rows(small + two)['b'] == ('| b | 34.5 ± 2.1 (n=2) | yes | not yet (2 of 3 seeds) '
                                      '| not yet (no teacher) |')
    assert '**Can measure: not yet.**' in text
    # c is below 30, spread over 1.5 and within 10 of the teacher: a no, whatever else.
    low = [_record('c', 'none', 'baseline', s, v) for s, v in enumerate((0.25, 0.29, 0.28))]
    records = small + two + low + [teacher]
    assert rows(records)['c'] == '| c | 27.3 ± 2.1 (n=3) | NO | NO | yes (+17.7) |'
    assert rows(records)['b'].endswith('| yes (+10.5) |')  # 45 - 34.5
    assert '**Can measure: no.**' in validity_markdown(summarize(records))
    # A control's student is a baseline too: its seeds' spread counts.
    control = [_record('r', 'none', 'baseline', s, v) for s, v in enumerate((0.37, 0.42, 0.41))]
    control += [_record('r', 'resnet18_v1', 'control-hint', s, 0.7) for s in range(3)]
    assert "| r (the controls' student) | 40.0 ± 2.6 (n=3) | yes | NO | NO (+5.0) |" == \
        rows(small + control + [teacher])["r (the controls' student)"]
    assert '**Can measure: no.**' in validity_markdown(summarize(small + control + [teacher]))


def test_a_changed_recipe_retires_its_records_and_sets_its_old_run_aside(tmp_path):
    from gankd.errors import GankdError
    from gankd.experiments.grid import Cell, Grid
    from gankd.experiments.report import write_report
    from gankd.experiments.results_file import done_records, load_results
    out, work = tmp_path / 'r.json', tmp_path / 'work'
    old_flags = ['--epochs', '2', '--lr', '0.001']
    new_flags = old_flags + ['--warmup-iters', '250']

    def cell(seed):
        prefix = str(work / 'students' / 'net-none-baseline-s{}'.format(seed) / 'model')
        return Cell('net/none/baseline/seed{}'.format(seed), 'baseline', 'net', 'none',
                    'baseline', seed, prefix, prefix + '_last.params',
                    [sys.executable, 'train_ssd.py'] + new_flags)
    cells = [cell(0), cell(1)]
    finished = time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(time.time() - 3600))
    records = [dict(_record('net', 'none', 'baseline', s, 0.3 + 0.05 * s), flags=old_flags,
                    finished_at=finished) for s in (0, 1)]
    out.write_text(json.dumps({'format': 'gankd-reproduce-results/1', 'records': records}))
    # Seed 0's folder is the old run (written before its record); seed 1's was written
    # since (the new recipe's run, started by hand): only the first is set aside.
    for c, age in ((cells[0], 7200), (cells[1], 0)):
        os.makedirs(os.path.dirname(c.prefix))
        Path(c.params).write_bytes(b'weights')
        os.utime(c.params, (time.time() - age, time.time() - age))
    grid = Grid(name='g', dataset_root=str(tmp_path), teachers=('none',), students=('net',),
                methods=(), seeds=(0, 1), teacher_flags={}, student_flags={}, out=str(out),
                work_dir=str(work))
    with pytest.raises(GankdError, match='--retire-changed'):
        done_records(grid, cells)
    assert done_records(grid, cells, 'drop') == {} and len(load_results(out)['records']) == 2
    assert done_records(grid, cells, 'retire') == {}
    data = load_results(out)
    assert data['records'] == []
    assert [r['key'] for r in data['retired']] == [c.key for c in cells]
    assert {r['retired_because'] for r in data['retired']} == {
        'the recipe changed: --warmup-iters 250 added'}
    assert not os.path.exists(os.path.dirname(cells[0].prefix))
    assert len(list((work / 'students').glob('net-none-baseline-s0.retired-*'))) == 1
    assert os.path.exists(cells[1].params)
    # The report keeps them, out of the tables, with why.
    data['records'] = [dict(_record('net', 'none', 'baseline', s, 0.5), flags=new_flags)
                       for s in (0, 1)]
    out.write_text(json.dumps(data))
    write_report(str(out), str(tmp_path / 'rep'), name='g', speed=False)
    text = (tmp_path / 'rep' / 'g.md').read_text()
    retired = text[text.index('### Retired cells'):].split('\n\n')[2].splitlines()
    assert retired[2:] == ['| net / none / baseline | {} | {:.1f} | {} | the recipe changed: '
                           '--warmup-iters 250 added |'.format(s, 30.0 + 5 * s, finished)
                           for s in (0, 1)]
    assert '| net | 50.0 ± 0.0 (n=2) |' in text


def _history(path, points):
    """A history file with one validated epoch per (iteration, mAP)."""
    path.write_text(''.join(json.dumps({'epoch': e, 'iteration': it, 'mAP': m}) + '\n'
                            for e, (it, m) in enumerate(points)))
    return str(path)


def test_report_convergence_and_controls(tmp_path):
    """Iterations to the baseline's final mAP, paired by seed; the controls' section with
    its pass/fail verdict; controls kept out of Table 1's rows and columns."""
    from gankd.experiments.curves import iterations_to_reach
    from gankd.experiments.report import write_report
    from gankd.experiments.stats import summarize
    h = lambda name, pts: _history(tmp_path / (name + '.jsonl'), pts)  # noqa: E731
    records = [
        dict(_record('mobilenet0.25', 'none', 'baseline', 0, 0.30),
             history=h('b0', [(100, 0.1), (200, 0.2), (300, 0.3)])),
        dict(_record('mobilenet0.25', 'none', 'baseline', 1, 0.40),
             history=h('b1', [(100, 0.2), (200, 0.3), (300, 0.4)])),
        dict(_record('mobilenet0.25', 'resnet18_v1', 'gan', 0, 0.35),
             history=h('g0', [(100, 0.2), (200, 0.31), (300, 0.35)])),
        dict(_record('mobilenet0.25', 'resnet18_v1', 'gan', 1, 0.38),
             history=h('g1', [(100, 0.2), (200, 0.3), (300, 0.38)])),
        dict(_record('resnet18_v1', 'none', 'baseline', 0, 0.20), history=None),
        _record('resnet18_v1', 'resnet18_v1', 'control-hint', 0, 0.45),
        # Learnt from another training of the teacher (a grid resumed elsewhere), at 60.
        dict(_record('resnet18_v1', 'resnet18_v1', 'control-lit', 0, 0.45), teacher_mAP=0.6),
        _record('mobilenet0.25', 'resnet18_v1@random', 'gan', 0, 0.28),
        {'key': 'teacher/resnet18_v1/seed233', 'role': 'teacher', 'student': None,
         'teacher': 'resnet18_v1', 'method': None, 'seed': 233, 'status': 'ok',
         'mAP': 0.5, 'loop_mAP': 0.5, 'history': None},
    ]
    reach = iterations_to_reach(records)
    gan = reach[('mobilenet0.25', 'resnet18_v1', 'gan')]
    assert gan['seeds'] == {0: 200, 1: None}  # seed 1 ends at 38 < its baseline's 40
    assert gan['baseline_iterations'] == {0: 300, 1: 300}
    s = summarize(records)
    assert s['teachers'] == ['resnet18_v1'] and s['methods'] == ['gan']
    assert s['students'] == ['mobilenet0.25']  # resnet18_v1 is only the control's student
    results = tmp_path / 'r.json'
    results.write_text(json.dumps({'records': records}))
    out = write_report(str(results), str(tmp_path / 'rep'), name='c')
    text = Path(out['report']).read_text()
    assert ('| mobilenet0.25 | resnet18_v1 | gan | seed 0: 200, seed 1: not reached | 300 | '
            '1 of 2 |') in text
    # 45 / 50 = 90% of the teacher: passes; the baseline of the same updates is 20.
    assert ('| resnet18_v1 | resnet18_v1 | control-hint | 45.0 (n=1) | 50.0 (n=1) | 90% | '
            '20.0 (n=1) | +25.0 (1 pair) | yes |') in text
    # Its share is of the teacher training it learnt from: 45 / 60 = 75%, short of 80%.
    assert ('| resnet18_v1 | resnet18_v1 | control-lit | 45.0 (n=1) | 60.0 (n=1) | 75% | '
            '20.0 (n=1) | +25.0 (1 pair) | NO |') in text
    assert '| mobilenet0.25 | resnet18_v1@random | gan | 28.0 (n=1) |' in text
    # A control recorded before trainings were named learnt from the training retired
    # without a SHA-256 (60 here), not from the current one (50).
    # Retiring it names that training in the records that name none.
    from gankd.experiments.results_file import retire_record, save_record
    results.write_text(json.dumps({'records': records[:-1] + [dict(records[-1], mAP=0.6)]}))
    retire_record(str(results), records[-1]['key'], 'missing')
    save_record(str(results), records[-1])
    text = Path(write_report(str(results), str(tmp_path / 'rep2'), name='c',
                             speed=False)['report']).read_text()
    assert ('| resnet18_v1 | resnet18_v1 | control-hint | 45.0 (n=1) | 60.0 (n=1) | '
            '75% |') in text
    assert '| resnet18_v1 | 50.0 | 50.0 | +0.00 |' in text
    learning = tmp_path / 'rep' / 'c_learning.png'
    assert learning.is_file() and _png_size(learning)[0] > 300
    assert '(c_learning.png)' in text


def test_two_grids_sharing_a_results_file_keep_each_others_records(tmp_path):
    # Two processes (say, one grid per core) each add 40 records to one file at once.
    out = tmp_path / 'shared.json'
    code = ('import sys; from gankd.experiments.results_file import save_record\n'
            'for i in range(40):\n'
            '    save_record(sys.argv[1], {"key": sys.argv[2] + str(i), "status": "ok"})\n')
    procs = [subprocess.Popen([sys.executable, '-c', code, str(out), tag]) for tag in 'ab']
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    keys = {r['key'] for r in json.loads(out.read_text())['records']}
    assert keys == {t + str(i) for t in 'ab' for i in range(40)}


def test_two_processes_running_one_grid_train_each_cell_once(voc_root, tmp_path):
    # One grid per core (or GPU) on the same cells: each cell is claimed by one process;
    # the other waits for the teacher it needs and leaves the students it finds taken.
    from conftest import STUDENT
    out, work = tmp_path / 'r.json', tmp_path / 'work'
    grid = ['--dataset-root', voc_root, '--teachers', 'none,' + STUDENT, '--students', STUDENT,
            '--seeds', '0', '--out', out, '--work-dir', work] + TINY
    grid = [str(a) for a in grid]
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    procs = [subprocess.Popen([sys.executable, str(ROOT / 'scripts' / 'reproduce.py')] + grid,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], '\n'.join(o[-2000:] for o in outputs)
    records = _records(out)
    assert len(records) == 3 and all(r['status'] == 'ok' for r in records.values())
    both = '\n'.join(outputs)
    assert both.count(': running (log: ') == 3, both
    assert 'in another process, skipped' in both, both
    for r in records.values():
        # Every training writes its command once into its log: one process ran it.
        assert Path(r['log']).read_text().count('$ ') == 1, r['key']


def test_a_faster_rcnn_report_stands_beside_table_3(tmp_path):
    """A Faster R-CNN grid's report quotes Table 3 (not Table 1), and skips the SSD-only
    speed measurement instead of failing on it."""
    from gankd.experiments.report import write_report
    from gankd.experiments.stats import record_family, summarize
    from gankd.experiments.tables import SPEED_HEADING

    def frcnn(record):
        script = 'train_faster_rcnn.py' if record['teacher'] == 'none' else \
            'train_gankd_faster_rcnn.py'
        # Records written before records carried their family: told by the script.
        return dict(record, command_line='python scripts/{} --network x'.format(script))
    records = [frcnn(_record('resnet10_v1b', 'none', 'baseline', s, v))
               for s, v in zip((0, 1), (0.40, 0.42))]
    records += [frcnn(_record('resnet10_v1b', 'resnet18_v1b', 'gan', s, v))
                for s, v in zip((0, 1), (0.43, 0.44))]
    records.append({'key': 'teacher/resnet18_v1b/seed233', 'role': 'teacher', 'student': None,
                    'teacher': 'resnet18_v1b', 'method': None, 'seed': 233, 'status': 'ok',
                    'mAP': 0.6, 'history': None, 'family': 'faster_rcnn',
                    'params': str(tmp_path / 'absent.params')})
    assert [record_family(r) for r in records] == ['faster_rcnn'] * 5
    assert record_family(_record('mobilenet1.0', 'none', 'baseline', 0, 0.3)) == 'ssd'
    assert summarize(records)['family'] == 'faster_rcnn'

    results = tmp_path / 'frcnn.json'
    results.write_text(json.dumps({'records': records}))
    out = write_report(str(results), str(tmp_path / 'rep'), speed=True)
    text = Path(out['report']).read_text()
    assert 'laid out like Table 3 (method: gan)' in text
    # Gains +3.0 and +2.0: +2.5 ± 0.7, beside Table 3's two GAN-KD rows (72.0 - 67.0, 74.0
    # - 71.7); its third row (another method) is quoted in the table, not as GAN-KD's.
    assert re.search(r'^\| resnet10_v1b \| resnet18_v1b \| \+2\.5 ± 0\.7 \(2 pairs\) \| '
                     r'\+5\.0 \(ResNet50 \+ RoIPooling\); \+2\.3 \(ResNet50 \+ RoIAlign\) \|$',
                     text, re.M)
    assert 'Table 3: Faster R-CNN students, ResNet101 teacher' in text
    assert 'Table 1:' not in text and 'ssd_512' not in text
    assert '| resnet18_v1b | 60.0 (n=1) | Teacher: Faster R-CNN ResNet101, 74.8+' in text
    assert SPEED_HEADING not in text
    assert all(os.path.exists(p) for p in out['figures'])
