"""Measures genegan.py edit for docs/edit.md, with the README's first run (its model, and the
classifier its eval wrote beside the toy set):
- on held-out toy canvases (a toy set of another seed, 20 faces of each set), eval's classifier
  on the re-aligned edited photos against the same faces' swap outputs, and the face's sharpness
  (the Laplacian variance of the re-aligned face over the photo's), for the paste's settings and
  for the two plain pastes (the model's output alone; only the smoothed change);
- the picture docs/edit.png: canvases edited both ways by the three pastes;
- time and peak memory of the command on photos of 2, 12 and 48 MP (a toy photo scaled up, its
  face found by the search).

    python docs/edit_measure.py --data_dir datasets/toy --model_dir train_log/toy/model
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import align  # noqa: E402
import genegan as G  # noqa: E402
from extras import edit, evaluation  # noqa: E402

SWEEP = {   # a paste -> the settings of extras/edit.py it changes
    'default': {},
    'output alone': {'MASK_LOW': -2.0, 'MASK_HIGH': -1.0},
    'change only': {'MASK_LOW': 1e9, 'MASK_HIGH': 2e9},
    'mask 6-15': {'MASK_LOW': 6.0, 'MASK_HIGH': 15.0},
    'mask 12-30': {'MASK_LOW': 12.0, 'MASK_HIGH': 30.0},
    'mask 24-60': {'MASK_LOW': 24.0, 'MASK_HIGH': 60.0},
    'mask sigma 2': {'MASK_SIGMA': 2.0},
    'feather 3': {'FEATHER_SIGMA': 3.0},
    'change sigma 1.5': {'CHANGE_SIGMA': 1.5},
    'change sigma 3': {'CHANGE_SIGMA': 3.0},
}


def held_out_set(tmp, num):
    held = os.path.join(tmp, 'held')
    assert G.main(['toy', '--out', held, '--num', str(num * 3), '--seed', '7']) == 0
    align.cli(['--data_dir', held, '--num_workers', '2'])
    _, _, landmarks, names = align.read_table(held, 'list_landmarks_celeba.txt')
    idxs1, idxs2, _ = G.read_attributes(held, 'Smiling')
    return held, landmarks, names, idxs1[:num], idxs2[:num]


def sharpness(bgr, lm):
    face = cv2.cvtColor(align.align_face_5p(bgr, lm)[64:224, 64:192], cv2.COLOR_BGR2GRAY)
    return cv2.Laplacian(face, cv2.CV_64F).var()


def rates(args, tmp):
    held, landmarks, names, A, B = held_out_set(tmp, args.num)
    model = G.load_model(args, torch.device('cpu'))[2]
    clf = G.Discriminator()
    path = os.path.join(args.data_dir, 'classifier_Smiling_64x64.pt')
    clf.load_state_dict(G.load_checkpoint(path, 'cpu', evaluation.CLASSIFIER_FORMAT,
                                          ('attribute', 'key', 'model'))['model'])
    clf.eval()

    def says_smile(faces):                  # RGB faces, resized as the demos resize
        with torch.no_grad():
            return (clf(torch.cat([G._batch(model, f) for f in faces]))[:, 0] > 0).float()

    photos = {i: cv2.imread(os.path.join(held, 'data', names[i])) for i in A + B}
    faces = {i: G.read_image(G.aligned_path(held, i)) for i in A + B}
    jobs = [(b, faces[a]) for a, b in zip(A, B)] + [(a, None) for a in A]   # add, remove
    edits = {}
    for i, target in jobs:
        face = align.align_face_5p(photos[i], landmarks[i])
        edits[i, target is None] = face, *edit.edit_face(model, face[..., ::-1], target, 1.0)
    swaps = [G.swap(model, faces[b], faces[a]) for a, b in zip(A, B)]
    print(f'{len(A)} faces of each set (toy seed 7); the classifier on the unedited faces: '
          f'smiling {says_smile([faces[a] for a in A]).mean():.2f} of A, '
          f'{says_smile([faces[b] for b in B]).mean():.2f} of B')
    print(f'model output: transfer {says_smile([edits[b, False][1] for b in B]).mean():.2f}, '
          f'removal {1 - says_smile([edits[a, True][1] for a in A]).mean():.2f}; swap: transfer '
          f'{says_smile([s[0] for s in swaps]).mean():.2f}, removal '
          f'{1 - says_smile([s[1] for s in swaps]).mean():.2f}\n')
    print('| paste | transfer | removal | sharpness (median, min) |\n| --- | --- | --- | --- |')
    pasted = {}
    for setting, values in SWEEP.items():
        saved = {k: getattr(edit, k) for k in values}
        for k, v in values.items():
            setattr(edit, k, v)
        out = {}
        for (i, remove), (face, o, rec) in edits.items():
            mat23 = align.get_align_5p_mat23(np.reshape(landmarks[i], (5, 2)), 256)
            out[i, remove] = edit.paste(photos[i], mat23, face, o, rec)[0]
        for k, v in saved.items():
            setattr(edit, k, v)
        pasted[setting] = out
        realigned = {k: align.align_face_5p(v, landmarks[k[0]])[..., ::-1] for k, v in out.items()}
        sharp = [sharpness(v, landmarks[k[0]]) / sharpness(photos[k[0]], landmarks[k[0]])
                 for k, v in out.items()]
        print(f'| {setting} | {says_smile([realigned[b, False] for b in B]).mean():.2f} | '
              f'{1 - says_smile([realigned[a, True] for a in A]).mean():.2f} | '
              f'{np.median(sharp):.2f}, {min(sharp):.2f} |', flush=True)
    picture(pasted, photos, landmarks, A[:2], B[:2])


def picture(pasted, photos, landmarks, A, B):
    """docs/edit.png: a row a canvas (two gaining a smile, two losing theirs): the photo's face,
    then pasted by the output alone, the change only, and the blend."""
    rows = []
    for i, remove in [(b, False) for b in B] + [(a, True) for a in A]:
        mat23 = align.get_align_5p_mat23(np.reshape(landmarks[i], (5, 2)), 256)
        cells = [photos[i]] + [pasted[s][i, remove] for s in ('output alone', 'change only',
                                                              'default')]
        rows.append(np.concatenate([cv2.warpAffine(c, mat23, (256, 256)) for c in cells], 1))
    cv2.imwrite(os.path.join(ROOT, 'docs', 'edit.png'), np.concatenate(rows, 0))


def timing(args, tmp):
    """Each photo through align.py --image (the face search alone) and through edit --remove."""
    photo = cv2.imread(os.path.join(args.data_dir, 'data', '000181.jpg'))
    print('\n| photo | align.py --image: seconds, peak memory | edit --remove: seconds, peak '
          'memory |\n| --- | --- | --- |')
    for mp in (2, 12, 48):
        scale = math.sqrt(mp * 1e6 / (photo.shape[0] * photo.shape[1]))
        big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        path = os.path.join(tmp, f'{mp}mp.jpg')
        cv2.imwrite(path, big)
        cells = []
        for command in (['align.py', '--image', path, '--out', os.path.join(tmp, 'a.jpg')],
                        ['genegan.py', 'edit', path, '--remove', '--model_dir', args.model_dir,
                         '--out', os.path.join(tmp, 'out.jpg')]):
            run = subprocess.run(['/usr/bin/time', '-f', '%e %M', sys.executable,
                                  os.path.join(ROOT, command[0]), *command[1:]],
                                 capture_output=True, text=True)
            secs, kb = run.stderr.strip().splitlines()[-1].split()
            cells.append(f'{secs} s, {int(kb) / 1e6:.2f} GB (exit {run.returncode})')
        print(f'| {big.shape[1]}x{big.shape[0]} ({mp} MP) | ' + ' | '.join(cells) + ' |',
              flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data_dir', default='datasets/toy')
    p.add_argument('--model_dir', default='train_log/toy/model')
    p.add_argument('--num', type=int, default=20)
    p.add_argument('--only', choices=('rates', 'timing'), help='one of the two measurements')
    args = p.parse_args()
    args.ckpt = None
    with tempfile.TemporaryDirectory() as tmp:
        for part in (rates, timing):
            if args.only in (None, part.__name__):
                part(args, tmp)


if __name__ == '__main__':
    main()
