"""The suite's script runner (``tests/script_runner.py``): a fork of a warm server must
behave as ``subprocess.run`` of a fresh interpreter does."""
import os
import subprocess
import sys
import textwrap

import pytest

import script_runner

SCRIPT = textwrap.dedent('''
    import os, sys
    print('argv', sys.argv[1:])
    print('cwd', os.getcwd())
    print('env', os.environ.get('GANKD_PROBE'))
    print('path0', sys.path[0])
    print('name', __name__, os.path.basename(__file__))
    print('to stderr', file=sys.stderr)
    if 'boom' in sys.argv:
        raise ValueError('boom')
    sys.exit(int(sys.argv[1]))
''')
PRELOADED = "import sys; print('mxnet' in sys.modules, 'gankd' in sys.modules)"


def _script(tmp_path, text, name='probe.py'):
    path = tmp_path / 'scripts' / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize('args', [['3', 'a b'], ['0'], ['1', 'boom']])
def test_a_fork_of_the_server_runs_a_script_as_a_fresh_interpreter(tmp_path, args):
    script = _script(tmp_path, SCRIPT)
    env = dict(os.environ, PYTHONUNBUFFERED='1', GANKD_PROBE='x y')
    cwd = tmp_path / 'elsewhere'
    cwd.mkdir()
    fresh = subprocess.run([sys.executable, script] + args, env=env, cwd=str(cwd),
                           capture_output=True, text=True, timeout=60)
    forked = script_runner.run([sys.executable, script] + args, env, cwd=cwd, timeout=60)
    assert forked.returncode == fresh.returncode == (1 if 'boom' in args else int(args[0]))
    assert forked.stdout == fresh.stdout
    assert forked.stderr == fresh.stderr
    assert "print('to stderr'" not in forked.stderr and 'to stderr' in forked.stderr
    if 'boom' in args:
        assert forked.stderr.rstrip().endswith('ValueError: boom')


def test_the_server_has_mxnet_but_nothing_of_gankd(tmp_path):
    # MXNet's import is what the server saves; gankd's own imports must happen in the
    # script, or a script missing one would pass here and fail for a user.
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    run = script_runner.run([sys.executable, _script(tmp_path, PRELOADED)], env, timeout=60)
    assert run.returncode == 0 and run.stdout.split() == ['True', 'False']
    # A run that changes what MXNet reads at import gets a fresh interpreter.
    other = dict(env, OMP_NUM_THREADS=str(int(env.get('OMP_NUM_THREADS') or 1) + 1))
    run = script_runner.run([sys.executable, _script(tmp_path, PRELOADED)], other, timeout=60)
    assert run.returncode == 0 and run.stdout.split() == ['False', 'False']


def test_a_run_over_its_time_is_killed(tmp_path):
    script = _script(tmp_path, 'import time; print("started", flush=True); time.sleep(60)')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with pytest.raises(subprocess.TimeoutExpired) as err:
        script_runner.run([sys.executable, script], env, timeout=2)
    assert 'started' in err.value.output
    # The server goes on serving.
    run = script_runner.run([sys.executable, _script(tmp_path, PRELOADED)], env, timeout=60)
    assert run.returncode == 0
