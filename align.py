"""5-point face alignment to 256x256: a line-by-line port of the official preprocess.py
(github.com/Prinsphield/GeneGAN), the first stage of the pipeline: genegan.py imports from here,
never the other way. Only the 5-point path that preprocess.py's main runs is ported; its unused
align_2p / align_face_2p are left out.

    python align.py [--data_dir datasets/celebA/] [--out_dir DATA_DIR/align_5p/] [--num_workers N]
                    [--layout wild|align|csv]
    python align.py --image PHOTO [--landmarks X1,Y1,...,X5,Y5] [--out FILE] [--preview FILE]
    python align.py --images DIR [--landmarks FILE] --out_dir OUT

The first reads one of CelebA's downloads (CELEBA_LAYOUTS): the in-the-wild DATA_DIR/data/*.jpg
with list_landmarks_celeba.txt (preprocess.py's input), or the aligned-and-cropped
img_align_celeba/*.jpg with list_landmarks_align_celeba.txt (or its CSV mirror), and writes
OUT_DIR/{:06d}.jpg. The other two align your own photos (extras/photos.py, this project's
addition). Restartable: images already aligned (256x256, readable) are skipped, each image is
written through a temp file and a rename, and unreadable inputs are reported in
OUT_DIR/failed.txt while the rest are aligned.
"""
import argparse
import contextlib
import glob
import os
import sys
import warnings
from multiprocessing import Pool

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

ALIGNED_SIZE = 256           # preprocess.py: align_face_5p(..., 256)
CELEBA_LAYOUTS = {     # the downloads, in order of preference: (image folders, landmark file)
    'wild': (['data'], 'list_landmarks_celeba.txt'),                     # the official one
    'align': (['img_align_celeba'], 'list_landmarks_align_celeba.txt'),  # 178x218 crops
    'csv': (['img_align_celeba/img_align_celeba', 'img_align_celeba'],      # the CSV mirror
            'list_landmarks_align_celeba.csv'),
}
FAILED_LIST = 'failed.txt'
LANDMARK_NAMES = ('lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y '
                  'leftmouth_x leftmouth_y rightmouth_x rightmouth_y').split()   # CelebA's header


class UserError(Exception):
    """A problem with the user's input: the CLIs print it as one line on stderr, exit code 2."""


def refuse(bad, message):
    """A user's error where BAD holds: the CLIs print MESSAGE as one line on stderr, exit 2."""
    if bad:
        raise UserError(message)


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), exit code 2."""
    def error(self, message):
        print(f'error: {message} (see {self.prog} --help)', file=sys.stderr)
        sys.exit(2)


def own_temp(path, ext='.tmp'):
    """PATH.PID.tmp: a temp file that only this process writes, so that processes writing one
    file never share one. Those of processes that are gone (a kill leaves its temp file behind)
    are removed first, on POSIX (on Windows, signal 0 would be Ctrl-C). genegan.py writes
    checkpoints, logs and caches through it."""
    for tmp in glob.glob(f'{glob.escape(path)}.*{ext}') if os.name == 'posix' else ():
        try:
            os.kill(int(tmp[len(path) + 1:-len(ext)]), 0)   # signal 0: only asks if it runs
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        except (ValueError, OSError):       # not a process id, or another user's process
            pass
    return f'{path}.{os.getpid()}{ext}'


def read_table(data_dir, name, number=int, values=None):
    """CelebA's NAME.txt (a count line and a header; list_eval_partition.txt has neither), else
    the mirror's NAME.csv, with VALUES numbers a row where given. Returns (path, column names or
    None, rows of numbers, first column): row i is image i+1."""
    path = os.path.join(data_dir, name if '.' in name else name + '.txt')
    if '.' not in name and not os.path.isfile(path) and os.path.isfile(path[:-4] + '.csv'):
        path = path[:-4] + '.csv'
    if not os.path.isfile(path):
        wanted = name if '.' in name else name + '.txt (or .csv)'
        raise UserError(f'{wanted} not found in {data_dir}')
    with open(path) as f:
        lines = f.read().strip().replace(',', ' ').split('\n')
    names, start = None, 0
    if path.endswith('.csv'):
        refuse(lines[0].split()[:1] != ['image_id'],
               f'{path}:1: expected the header "image_id,...", got {lines[0][:40]!r}')
        names, start = lines[0].split()[1:], 1
    elif lines[0].strip().isdigit():
        names, start = (lines[1].split() if len(lines) > 1 else []), 2
    refuse(len(lines) <= start, f'{path}: no rows')
    width = 1 + len(names) if names is not None else len(lines[0].split())
    if values:
        width = 1 + values
    rows, keys = [], []
    for lineno, line in enumerate(lines[start:], start=start + 1):
        fields = line.split()
        if len(fields) != width:
            raise UserError(f'{path}:{lineno}: expected {width} columns, got {len(fields)}')
        try:
            rows.append([number(v) for v in fields[1:]])
        except ValueError:
            raise UserError(f'{path}:{lineno}: values must be '
                            f'{"integers" if number is int else "numbers"}: {line.strip()[:60]!r}')
        keys.append(fields[0])
    return path, names, rows, keys


def read_image(path, size=None):
    """dataset.py read_images / test.py misc.imread: RGB uint8, size x size if size is given."""
    refuse(not os.path.isfile(path), f'image not found: {path}')
    try:
        with warnings.catch_warnings():     # PIL's warning from MAX_IMAGE_PIXELS to the limit
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(path) as im:
                img = np.asarray(im.convert('RGB'))
    except Image.DecompressionBombError:
        raise UserError(f'{path}: too large to decode safely '
                        f'(over {2 * Image.MAX_IMAGE_PIXELS} pixels)')
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f'{path}: not a readable image ({type(err).__name__})')
    refuse(size and img.shape[:2] != (size, size),
           f'{path}: is {img.shape[1]}x{img.shape[0]}, not {size}x{size} '
           f'(align.py writes {ALIGNED_SIZE}x{ALIGNED_SIZE})')
    return img


def image_names(folder):
    """The files of FOLDER that PIL knows by their extension (.jpg, .png, ...), sorted; none where
    FOLDER is missing. genegan.py's two folders and your own photos are read so."""
    return sorted(n for n in (os.listdir(folder) if os.path.isdir(folder) else [])
                  if os.path.splitext(n)[1].lower() in Image.registered_extensions())


# preprocess.py: average landmarks
mean_face_lm5p = np.array([
    [-0.17607, -0.172844],  # left eye pupil
    [0.1736, -0.17356],  # right eye pupil
    [-0.00182, 0.0357164],  # nose tip
    [-0.14617, 0.20185],  # left mouth corner
    [0.14496, 0.19943],  # right mouth corner
])


def _get_align_5p_mat23_size_256(lm):
    """preprocess.py: _get_align_5p_mat23_size_256, the least-squares similarity transform that
    maps the landmarks onto the mean face (its unused locals mat, ka, kb are dropped)."""
    width = 256
    mf = mean_face_lm5p.copy()

    # Assumptions:
    # 1. The output image size is 256x256 pixels
    # 2. The distance between two eye pupils is 70 pixels
    ratio = 70.0 / (
        256.0 * 0.34967
    )  # magic number 0.34967 to compensate scaling from average landmarks

    left_eye_pupil_y = mf[0][1]
    # In an aligned face image, the ratio between the vertical distances from eye to the top and
    # bottom is 1:1.42
    ratioy = (left_eye_pupil_y * ratio + 0.5) * (1 + 1.42)
    mf[:, 0] = (mf[:, 0] * ratio + 0.5) * width
    mf[:, 1] = (mf[:, 1] * ratio + 0.5) * width / ratioy
    mx = mf[:, 0].mean()
    my = mf[:, 1].mean()
    dmx = lm[:, 0].mean()
    dmy = lm[:, 1].mean()
    ux = mf[:, 0] - mx
    uy = mf[:, 1] - my
    dux = lm[:, 0] - dmx
    duy = lm[:, 1] - dmy
    c1 = (ux * dux + uy * duy).sum()
    c2 = (ux * duy - uy * dux).sum()
    c3 = (dux**2 + duy**2).sum()
    a = c1 / c3
    b = c2 / c3

    kx = 1
    ky = 1

    transform = np.zeros((2, 3))
    transform[0][0] = kx * a
    transform[0][1] = kx * b
    transform[0][2] = mx - kx * a * dmx - kx * b * dmy
    transform[1][0] = -ky * b
    transform[1][1] = ky * a
    transform[1][2] = my - ky * a * dmy + ky * b * dmx
    return transform


def get_align_5p_mat23(lm5p, size):
    """preprocess.py: get_align_5p_mat23. lm5p: (5, 2) landmarks of left eye pupil, right eye
    pupil, nose tip, left mouth corner, right mouth corner. Returns the 2x3 affine matrix."""
    mat23 = _get_align_5p_mat23_size_256(lm5p.copy())
    mat23 *= size / 256
    return mat23


def align_given_lm5p(img, lm5p, size):
    """preprocess.py: align_given_lm5p."""
    mat23 = get_align_5p_mat23(lm5p, size)
    return cv2.warpAffine(img, mat23, (size, size))


def align_face_5p(img, landmarks):
    """preprocess.py: align_face_5p."""
    aligned_img = align_given_lm5p(img, np.array(landmarks).reshape((5, 2)), ALIGNED_SIZE)
    return aligned_img


def work(job, skip_done=True):
    """preprocess.py: work, for one (source, output, 10 landmark values) job, plus a skip of
    finished outputs and an atomic write. Returns 'aligned', 'skipped' or why the image failed."""
    src_imname, des_imname, landmarks = job
    if skip_done and is_aligned(des_imname):
        return 'skipped'
    img = cv2.imread(src_imname)
    if img is None:
        return f'{src_imname}: missing or not a readable image'
    aligned_img = align_face_5p(img, landmarks)
    ok, jpeg = cv2.imencode('.jpg', aligned_img)  # cv2.imwrite's encoder and default quality
    if not ok:
        return f'{src_imname}: JPEG encoding of the aligned face failed'
    # own_temp's name (runs may share OUT_DIR), without its scan of the folder for every image
    tmp = f'{des_imname}.{os.getpid()}.tmp'
    with open(tmp, 'wb') as f:
        f.write(jpeg.tobytes())
    os.replace(tmp, des_imname)
    return 'aligned'


def main(jobs, out_dir, num_workers, failed=()):
    """preprocess.py: main's pool over the jobs, reporting what failed (and FAILED before)."""
    os.makedirs(out_dir, exist_ok=True)
    counts = {'aligned': 0, 'skipped': 0}
    failed = list(failed)
    with Pool(num_workers) as pool:
        results = pool.imap(work, jobs, chunksize=16)
        for result in tqdm(results, total=len(jobs), desc='align', unit='img'):
            if result in counts:
                counts[result] += 1
            else:
                failed.append(result)
    failed_path = os.path.join(out_dir, FAILED_LIST)
    if failed:
        with open(failed_path, 'w') as f:
            f.write('\n'.join(failed) + '\n')
        for line in failed[:5]:
            print(f'failed: {line}', file=sys.stderr)
    elif os.path.exists(failed_path):
        os.remove(failed_path)
    print(f'aligned {counts["aligned"]}, skipped {counts["skipped"]} (already aligned), '
          f'failed {len(failed)}' + (f' (listed in {failed_path})' if failed else '')
          + f' -> {out_dir}')
    return len(failed)


def is_aligned(path):
    """A finished output: a readable 256x256 image (what a previous run wrote)."""
    try:
        return read_image(path, ALIGNED_SIZE) is not None
    except UserError:
        return False


def find_layout(data_dir, layout=None):
    """The CelebA download data_dir holds: (layout, image folder, landmark file name); the
    in-the-wild one wins where there are several."""
    for name, (folders, landmark_file) in CELEBA_LAYOUTS.items():
        for folder in folders if layout in (None, name) else ():
            found = next(glob.iglob(os.path.join(data_dir, folder, '*.jpg')), None)
            if found and os.path.isfile(os.path.join(data_dir, landmark_file)):
                return name, os.path.join(data_dir, folder), landmark_file
    looked = '; '.join(f'{folder}/*.jpg with {landmark_file}' for name, (folders, landmark_file)
                       in CELEBA_LAYOUTS.items() if layout in (None, name) for folder in folders)
    raise UserError(f'no CelebA layout in {data_dir}: looked for {looked}')


def check_landmarks_fit(image_dir, landmark_file, landmarks):
    """The official repository's issue #7: 178x218 aligned-and-cropped images under data/ with the
    in-the-wild landmarks give crooked faces. Landmarks must fall inside their images."""
    for i, lm in enumerate(landmarks[:20]):
        img = cv2.imread(os.path.join(image_dir, '{:06d}.jpg'.format(i + 1)))
        xs, ys = lm[0::2], lm[1::2]
        if img is not None and (max(xs) >= img.shape[1] or max(ys) >= img.shape[0] or min(lm) < 0):
            raise UserError(
                f'{image_dir}/{i + 1:06d}.jpg is {img.shape[1]}x{img.shape[0]} but its landmarks '
                f'in {landmark_file} reach ({max(xs)}, {max(ys)}): images and landmarks come from '
                f'different CelebA downloads. Put img_align_celeba/*.jpg with '
                f'list_landmarks_align_celeba.txt, '
                f'or the in-the-wild images in data/ with list_landmarks_celeba.txt')


def celeba_jobs(data_dir, out_dir, layout=None):
    """preprocess.py: main's inputs, from one of CelebA's downloads."""
    layout, image_dir, landmark_file = find_layout(data_dir, layout)
    path, _, landmarks, _ = read_table(data_dir, landmark_file, values=10)
    im_list = glob.glob(os.path.join(image_dir, '*.jpg'))
    refuse(len(landmarks) != len(im_list),
           f'{landmark_file} has {len(landmarks)} rows but {image_dir} has '
           f'{len(im_list)} .jpg images')
    check_landmarks_fit(image_dir, landmark_file, landmarks)
    print(f'aligning {len(im_list)} images of the {layout!r} layout: {image_dir} '
          f'with {landmark_file}')
    return [(os.path.join(image_dir, '{:06d}.jpg'.format(i + 1)),
             os.path.join(out_dir, '{:06d}.jpg'.format(i + 1)), lm)
            for i, lm in enumerate(landmarks)]


def cli(argv=None):
    parser = Parser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_dir', default='datasets/celebA/',
                        help='holds data/*.jpg and list_landmarks_celeba.txt, or img_align_celeba/ '
                             'and list_landmarks_align_celeba.txt/.csv (default: %(default)s)')
    parser.add_argument('--layout', choices=list(CELEBA_LAYOUTS),
                        help='force one layout (default: the first found, in-the-wild first)')
    photos = parser.add_mutually_exclusive_group()
    photos.add_argument('--image', help='align one photo of yours (its face found by dlib, or '
                        'from --landmarks X1,Y1,...,Y5)')
    photos.add_argument('--images', help='align a folder of photos (faces found by dlib, their '
                        'points written to OUT_DIR/landmarks.txt; or from --landmarks FILE)')
    parser.add_argument('--landmarks', help='with --image: 10 comma-separated pixel coordinates; '
                        'with --images: a file of "name x1 y1 ... x5 y5" rows (.txt or .csv). '
                        'Order: left eye, right eye, nose tip, left and right mouth corner')
    parser.add_argument('--face', type=int, default=1, metavar='K',
                        help='with --image, no --landmarks: take the K-th face found (default 1)')
    parser.add_argument('--preview', help='with --image: also write the photo with the faces found '
                        'and the five points drawn (.jpg or .png)')
    parser.add_argument('--out', help='with --image: the aligned JPEG (default: aligned/PHOTO.jpg)')
    parser.add_argument('--out_dir', default=None,
                        help='default: DATA_DIR/align_5p/; required with --images')
    parser.add_argument('--num_workers', type=int, default=os.cpu_count(),
                        help='worker processes (default: %(default)s; preprocess.py used 30)')
    args = parser.parse_args(argv)
    if args.images and not args.out_dir:
        parser.error('--images needs --out_dir')
    if args.images and os.path.abspath(args.images) == os.path.abspath(args.out_dir):
        parser.error('--out_dir must be another folder than --images (it would replace photos)')
    if args.preview and not args.image:
        parser.error('--preview needs --image (one photo)')
    if args.face < 1 or args.face > 1 and (args.landmarks or not args.image):
        parser.error('--face K: K from 1, with --image and without --landmarks')
    try:
        if args.image or args.images:
            from extras import photos           # your own photos: this project's addition
        if args.image:
            return photos.align_photo(args.image, args.landmarks, args.out, args.face, args.preview)
        out_dir = args.out_dir or os.path.join(args.data_dir, 'align_5p')
        failed = []
        if args.images and args.landmarks:
            jobs = photos.folder_jobs(args.images, args.landmarks, out_dir)
        elif args.images:
            jobs, failed = photos.found_jobs(args.images, out_dir, max(1, args.num_workers))
        else:
            jobs = celeba_jobs(args.data_dir, out_dir, args.layout)
        main(jobs, out_dir, max(1, args.num_workers), failed)
    except UserError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':     # hand over to the module that extras/ imports: one copy of each
    import align
    align.cli()
