"""usage: compare.py A.params B.params -- exit 0 when every array is bit-identical"""
import sys
import mxnet as mx
import numpy as np
a, b = mx.nd.load(sys.argv[1]), mx.nd.load(sys.argv[2])
assert sorted(a) == sorted(b), 'different parameter names'
diff = [k for k in a if not np.array_equal(a[k].asnumpy(), b[k].asnumpy())]
print('{} arrays, {} differ{}'.format(len(a), len(diff), ': ' + ', '.join(diff[:5]) if diff else ''))
sys.exit(1 if diff else 0)
