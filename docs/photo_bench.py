"""Time and peak memory of `align.py --image` on phone-sized photos, with and without a face.

    python docs/photo_bench.py --toy DATA_DIR [--mp 2 12 48 64]

Each photo is a 4:3 grey gradient; the one with a face has toy photo 000001.jpg of DATA_DIR
(genegan.py toy --out DATA_DIR) scaled to its height in the middle. Each is a JPEG (quality 90) in a
temporary folder; align.py runs in a process of its own, timed from its start to its exit, with
its peak resident memory (os.wait4's rusage: Linux and macOS). Prints a Markdown table."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ALIGN = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'align.py')
parser = argparse.ArgumentParser()
parser.add_argument('--toy', required=True)
parser.add_argument('--mp', type=float, nargs='+', default=[2, 12, 48, 64])
args = parser.parse_args()
face = cv2.imread(os.path.join(args.toy, 'data', '000001.jpg'))
print('| photo | face | seconds | peak memory | align.py said |\n| --- | --- | --- | --- | --- |')
with tempfile.TemporaryDirectory() as tmp:
    for mp in args.mp:
        w = round((mp * 1e6 * 4 / 3) ** 0.5)
        h = round(w * 3 / 4)
        for has in ('yes', 'no'):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = np.linspace(90, 200, h, dtype=np.uint8)[:, None, None]
            if has == 'yes':
                fw = round(face.shape[1] * h / face.shape[0])
                img[:, (w - fw) // 2:(w - fw) // 2 + fw] = cv2.resize(face, (fw, h))
            path, log = os.path.join(tmp, f'{has}.jpg'), os.path.join(tmp, 'log.txt')
            cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            del img
            with open(log, 'w') as f:
                start = time.perf_counter()
                proc = subprocess.Popen([sys.executable, ALIGN, '--image', path,
                                         '--out', os.path.join(tmp, 'out.jpg')],
                                        stdout=f, stderr=subprocess.STDOUT)
                _, status, usage = os.wait4(proc.pid, 0)
                sec = time.perf_counter() - start
            peak = usage.ru_maxrss / (2 ** 30 if sys.platform == 'darwin' else 2 ** 20)
            said = open(log).read().strip().splitlines()
            said = said[-1].replace(tmp + os.sep, '') if said else ''
            print(f'| {w}x{h} ({mp:g} MP) | {has} | {sec:.1f} | {peak:.2f} GB | '
                  f'{said[:70]} (exit {os.waitstatus_to_exitcode(status)}) |', flush=True)
