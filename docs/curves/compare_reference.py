"""Two records of the same reference (docs/curves/tf_reference.py), key by key: which keys are
bit-identical, and for the others the largest difference, relative to the key's largest value.

    python docs/curves/compare_reference.py testdata/genegan_tf_reference.npz new.npz
"""
import json
import sys

import numpy as np

a, b = (np.load(path) for path in sys.argv[1:3])
if set(a.files) != set(b.files):
    sys.exit(f'keys differ: only in the first {sorted(set(a.files) - set(b.files))[:5]}, '
             f'only in the second {sorted(set(b.files) - set(a.files))[:5]}')
same, differ = [], []
for key in sorted(a.files):
    if key == 'meta':
        meta_a, meta_b = (json.loads(str(f['meta'])) for f in (a, b))
        (same if meta_a == meta_b else differ).append((key, 0.0))
    elif a[key].dtype != b[key].dtype or a[key].shape != b[key].shape:
        differ.append((key, np.inf))
    elif np.array_equal(a[key], b[key]):
        same.append((key, 0.0))
    else:
        x, y = a[key].astype(np.float64), b[key].astype(np.float64)
        differ.append((key, np.abs(x - y).max() / max(np.abs(x).max(), 1e-30)))
print(f'{len(a.files)} keys: {len(same)} bit-identical, {len(differ)} differ')
for key, err in sorted(differ, key=lambda d: -d[1]):
    print(f'  {key}: {err:.2e}')
