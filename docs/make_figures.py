"""Remakes two pictures of README.md from a 128x128 toy run (its commands are in README.md,
"What training does", 128x128). Run from the repository root in the project's venv:

    python docs/make_figures.py --data_dir toy2000 --ckpt run128/model/latest.pt

- docs/toy128_swaps.png: four held-out pairs as Ax, Be, Bx, Ae (the demos' swap, moving
  statistics);
- docs/photo_route.png: the worked photo example: the drawn photo with what align.py found
  (--preview), the aligned face, a held-out face without a smile, and the two swap outputs.
Both are palette PNGs (256 colours) to stay small.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.getcwd())
import genegan as G  # noqa: E402


def save(rows, path):
    img = Image.fromarray(np.concatenate(rows, axis=0).clip(0, 255).astype(np.uint8))
    img.quantize(256).save(path, optimize=True)
    print(f'wrote {path} ({os.path.getsize(path) // 1024} KB)')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data_dir', required=True)
    p.add_argument('--ckpt', required=True)
    args = p.parse_args()
    model = G.load_model(argparse.Namespace(ckpt=args.ckpt, model_dir=None), 'cpu')[2]
    size = model.img_size
    data = G.load_dataset(args.data_dir, 'Smiling')
    held = G.held_out_rows(data)[0]
    A = [i for i in data.idxs1 if i in held][:4]
    B = [i for i in data.idxs2 if i in held][:4]
    rows = []
    for a, b in zip(A, B):
        Ax, Be = G.read_image(data.paths[a]), G.read_image(data.paths[b])
        Bx, Ae = G.swap(model, Be, Ax)             # Be gains Ax's smile; Ax loses it
        rows.append(np.concatenate([G.imresize(Ax, size), G.imresize(Be, size), Bx, Ae], 1))
    save(rows, 'docs/toy128_swaps.png')

    with tempfile.TemporaryDirectory() as tmp:
        run = lambda *argv: subprocess.run([sys.executable, *argv], check=True, cwd=tmp)  # noqa
        here = os.getcwd()
        run(os.path.join(here, 'genegan.py'), 'toy', '--out', 'photos', '--num', '2', '--seed', '7')
        run(os.path.join(here, 'align.py'), '--image', 'photos/data/000002.jpg', '--out', 'me.jpg',
            '--preview', 'me_found.jpg')
        found = Image.open(os.path.join(tmp, 'me_found.jpg'))
        found = np.asarray(found.resize((round(found.width * size / found.height), size)))
        me = G.read_image(os.path.join(tmp, 'me.jpg'))
    other = G.read_image(data.paths[B[0]])
    out1, out2 = G.swap(model, other, me)          # the held-out face gains my smile; I lose it
    save([np.concatenate([found, G.imresize(me, size), G.imresize(other, size), out1, out2], 1)],
         'docs/photo_route.png')


if __name__ == '__main__':
    main()
