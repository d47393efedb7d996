"""genegan.py toy: drawn faces in CelebA's file layouts (or two folders), with their true
landmarks and attributes, for the tests and a first run without CelebA."""
import glob
import os

import cv2
import numpy as np

from align import CELEBA_LAYOUTS, LANDMARK_NAMES, align_face_5p, mean_face_lm5p, refuse
from genegan import PARTITIONS, at_least

CELEBA_ATTRIBUTES = (
    '5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose '
    'Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee '
    'Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes '
    'No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling '
    'Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace '
    'Wearing_Necktie Young').split()
HAIR_COLOURS = {'Black_Hair': (30, 30, 35), 'Blond_Hair': (90, 200, 230),     # BGR
                'Brown_Hair': (40, 70, 120), 'Gray_Hair': (160, 160, 165)}
# img_align_celeba: 178x218 crops, the 5 landmarks near these places (means of CelebA's list)
CELEBA_ALIGNED_SIZE = (178, 218)
CELEBA_ALIGNED_LM = np.float32([[69, 111], [108, 111], [88, 134], [72, 152], [106, 152]])

SHARED_FLAGS = ()


def add_flags(add):
    add('--out', required=True, help='a new folder')
    add('-a', '--attr', '--attribute', dest='attribute',
        help='with --layout folders: the attribute that splits A from B (default Smiling)')
    add('--num', type=at_least(2), default=200, help='faces')
    add('--seed', type=int, default=0, help='drawing seed')
    add('--layout', choices=[*CELEBA_LAYOUTS, 'folders'], default='wild',
        help='in-the-wild (data/), aligned-and-cropped (img_align_celeba/), its CSV mirror, or '
             'aligned faces in trainA/ trainB/ testA/ testB/ split by --attr')


def draw_toy_face(rng, attrs):
    """One in-the-wild-sized canvas with a drawn face at a random place, scale and roll.
    Returns (BGR image, 5x2 integer landmarks in CelebA's order)."""
    # Face geometry in units of the face scale, centred on the face. The landmarks are
    # preprocess.py's mean face, so aligned toy faces sit where aligned CelebA faces do.
    landmarks = mean_face_lm5p
    h, w = int(rng.integers(480, 720)), int(rng.integers(360, 520))
    scale = rng.uniform(180, 300)                      # eye distance about 0.35 * scale pixels
    roll = np.deg2rad(rng.uniform(-20, 20))
    centre = np.array([rng.uniform(0.4, 0.6) * w, rng.uniform(0.4, 0.6) * h])
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])

    def pts(uv):
        return (np.asarray(uv, float) @ rot.T * scale + centre).round().astype(np.int32)

    def ellipse(cx, cy, ax, ay, a0=0, a1=360):
        t = np.deg2rad(np.arange(a0, a1 + 1, 6))
        return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], 1)

    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(60, 230, 3)
    img = (img * np.linspace(0.7, 1.1, h)[:, None, None]).clip(0, 255).astype(np.uint8)
    hair = next((c for k, c in HAIR_COLOURS.items() if attrs[k] == 1), (50, 50, 60))
    skin = tuple(int(v) for v in rng.integers([120, 150, 190], [170, 190, 240]))
    thick = max(2, int(scale / 60))
    cv2.fillPoly(img, [pts(ellipse(0, -0.04, 0.47, 0.6))], hair)                  # hair
    cv2.fillPoly(img, [pts(ellipse(0, 0.02, 0.4, 0.54))], skin)                   # head
    if attrs['Bangs'] == 1:                                                       # fringe
        top = ellipse(0, 0.02, 0.4, 0.54, 200, 340)
        zigzag = [(x, -0.24 + 0.04 * (k % 2)) for k, x in enumerate(np.linspace(0.38, -0.38, 9))]
        cv2.fillPoly(img, [pts(np.concatenate([top, zigzag]))], hair)
    for ex, ey in landmarks[:2]:                                               # eyes
        cv2.fillPoly(img, [pts(ellipse(ex, ey, 0.065, 0.03))], (245, 245, 245))
        cv2.fillPoly(img, [pts(ellipse(ex, ey, 0.022, 0.022))], (40, 30, 20))
        cv2.polylines(img, [pts([(ex - 0.07, ey - 0.07), (ex, ey - 0.09), (ex + 0.07, ey - 0.07)])],
                      False, hair, thick)
    nose = landmarks[2]
    cv2.polylines(img, [pts([(0, -0.1), (nose[0] - 0.03, nose[1]), (nose[0] + 0.03, nose[1])])],
                  False, (90, 110, 160), thick)
    (lx, ly), (rx, ry) = landmarks[3:]
    if attrs['Smiling'] == 1:                                                      # open smile
        lower = [(x, ly + 0.09 * (1 - (2 * (x - lx) / (rx - lx) - 1) ** 2))
                 for x in np.linspace(lx, rx, 12)]
        cv2.fillPoly(img, [pts([(lx, ly), (rx, ry)] + lower[::-1])], (60, 40, 150))
        teeth = [(lx + 0.03, ly + 0.01), (rx - 0.03, ry + 0.01), (rx - 0.05, ry + 0.035),
                 (lx + 0.05, ly + 0.035)]
        cv2.fillPoly(img, [pts(teeth)], (235, 235, 235))
    else:                                                                          # closed lips
        cv2.polylines(img, [pts([(lx, ly), (0, (ly + ry) / 2 + 0.01), (rx, ry)])], False,
                      (70, 60, 160), thick + 1)
    if attrs['Eyeglasses'] == 1:
        for ex, ey in landmarks[:2]:
            cv2.polylines(img, [pts(ellipse(ex, ey, 0.1, 0.07))], True, (20, 20, 20), thick)
        cv2.polylines(img, [pts([(-0.076, -0.17), (0.074, -0.17)])], False, (20, 20, 20), thick)
    return img, pts(landmarks)


def main(args):
    """CelebA's files in one of its layouts (CELEBA_LAYOUTS): the images, their 5 landmarks,
    list_attr_celeba and list_eval_partition (rows 80/10/10% train/val/test, as CelebA's). Or
    two folders: the same faces aligned as align.py aligns them, in trainA/trainB (train and val
    rows) and testA/testB (test rows) by --attr."""
    folders = (['trainA', 'trainB', 'testA', 'testB'] if args.layout == 'folders'
               else CELEBA_LAYOUTS[args.layout][0][:1])
    stem, ext = os.path.splitext(CELEBA_LAYOUTS.get(args.layout, ('', ''))[1])
    attribute = args.attribute or 'Smiling'
    refuse(args.attribute and args.layout != 'folders' or attribute not in CELEBA_ATTRIBUTES,
           f'--attr {attribute!r}: toy --layout folders splits by one of '
           f'{" ".join(CELEBA_ATTRIBUTES)}; the CelebA layouts write them all')
    for data in (os.path.join(args.out, folder) for folder in folders):
        refuse(glob.glob(os.path.join(data, '*.jpg')),
               f'{data} already holds images; choose another --out')
        os.makedirs(data, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    tables = {stem: [], 'list_attr_celeba': [], 'list_eval_partition': []}
    for i in range(args.num):
        attrs = dict(zip(CELEBA_ATTRIBUTES, rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))))
        hair = rng.choice(list(HAIR_COLOURS) + [None])
        for key in HAIR_COLOURS:
            attrs[key] = 1 if key == hair else -1
        img, landmarks = draw_toy_face(rng, attrs)
        name = '{:06d}.jpg'.format(i + 1)
        split = int(i >= 0.8 * args.num) + int(i >= 0.9 * args.num)
        if args.layout == 'folders':    # what align.py writes from the in-the-wild JPEG
            img = cv2.imdecode(cv2.imencode('.jpg', img)[1], cv2.IMREAD_COLOR)
            folder = ('test' if split == PARTITIONS['test'] else 'train') + \
                ('A' if attrs[attribute] == 1 else 'B')
            cv2.imwrite(os.path.join(args.out, folder, name), align_face_5p(img, landmarks))
            continue
        if args.layout != 'wild':       # aligned and cropped as CelebA's: a similarity, then a crop
            mat = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), CELEBA_ALIGNED_LM)[0]
            img = cv2.warpAffine(img, mat, CELEBA_ALIGNED_SIZE)
            landmarks = (landmarks @ mat[:, :2].T + mat[:, 2]).round().astype(int)
        cv2.imwrite(os.path.join(data, name), img)
        tables[stem].append([name, *landmarks.ravel()])
        tables['list_attr_celeba'].append([name, *(attrs[k] for k in CELEBA_ATTRIBUTES)])
        tables['list_eval_partition'].append([name, split])
    if args.layout == 'folders':
        print(f'wrote {args.num} aligned toy faces to {args.out}, split by {attribute} '
              f'(next: python genegan.py train --data_dir {args.out} --partition train)')
        return
    for table, header in ((stem, LANDMARK_NAMES), ('list_attr_celeba', CELEBA_ATTRIBUTES),
                          ('list_eval_partition', None)):
        sep = ',' if ext == '.csv' else ' '
        if ext == '.csv':
            lines = [','.join(['image_id', *(header or ['partition'])])]
        else:                   # CelebA's .txt: a count line and a header, but for the partition
            lines = [str(args.num), ' '.join(header)] if header else []
        lines += [sep.join(str(v) for v in row) for row in tables[table]]
        with open(os.path.join(args.out, table + ext), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    print(f'wrote {args.num} toy faces to {args.out} (next: python align.py --data_dir {args.out})')
