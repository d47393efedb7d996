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
OUT_DIR/{:06d}.jpg. The other two align your own photos from their five points, in CelebA's
order (left eye, right eye, nose tip, left mouth corner, right mouth corner; pixels): one photo,
or a folder with a landmark file of CelebA's format (name x1 y1 ... x5 y5 rows, .txt or .csv),
names kept. Without --landmarks, dlib finds the faces and their points (FaceFinder, this
project's addition); a folder's points are then written to OUT/landmarks.txt. Restartable:
images already aligned (256x256, readable) are skipped, each image is written through a temp
file and a rename, and unreadable inputs are reported in OUT_DIR/failed.txt while the rest are
aligned.
"""
import argparse
import contextlib
import glob
import importlib.util
import os
import sys
import warnings
from collections import Counter
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
        if lines[0].split()[:1] != ['image_id']:
            raise UserError(f'{path}:1: expected the header "image_id,...", got {lines[0][:40]!r}')
        names, start = lines[0].split()[1:], 1
    elif lines[0].strip().isdigit():
        names, start = (lines[1].split() if len(lines) > 1 else []), 2
    if len(lines) <= start:
        raise UserError(f'{path}: no rows')
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
    if not os.path.isfile(path):
        raise UserError(f'image not found: {path}')
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)   # read up to the limit
            img = np.asarray(im.convert('RGB'))
    except Image.DecompressionBombError:
        raise UserError(f'{path}: too large to decode safely '
                        f'(over {2 * Image.MAX_IMAGE_PIXELS} pixels)')
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f'{path}: not a readable image ({type(err).__name__})')
    if size and img.shape[:2] != (size, size):
        raise UserError(f'{path}: is {img.shape[1]}x{img.shape[0]}, not {size}x{size} '
                        f'(align.py writes {ALIGNED_SIZE}x{ALIGNED_SIZE})')
    return img

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


def is_aligned(path):
    """A finished output: a readable 256x256 image (what a previous run wrote)."""
    try:
        return read_image(path, ALIGNED_SIZE) is not None
    except UserError:
        return False


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


def celeba_jobs(data_dir, out_dir, layout=None):
    """preprocess.py: main's inputs, from one of CelebA's downloads."""
    layout, image_dir, landmark_file = find_layout(data_dir, layout)
    path, _, landmarks, _ = read_table(data_dir, landmark_file, values=10)
    im_list = glob.glob(os.path.join(image_dir, '*.jpg'))
    if len(landmarks) != len(im_list):
        raise UserError(f'{landmark_file} has {len(landmarks)} rows but {image_dir} has '
                        f'{len(im_list)} .jpg images')
    check_landmarks_fit(image_dir, landmark_file, landmarks)
    print(f'aligning {len(im_list)} images of the {layout!r} layout: {image_dir} '
          f'with {landmark_file}')
    return [(os.path.join(image_dir, '{:06d}.jpg'.format(i + 1)),
             os.path.join(out_dir, '{:06d}.jpg'.format(i + 1)), lm)
            for i, lm in enumerate(landmarks)]


def photo_names(image_dir):
    """The files of IMAGE_DIR that PIL knows by their extension, sorted."""
    if not os.path.isdir(image_dir):
        raise UserError(f'--images: folder not found: {image_dir}')
    names = sorted(n for n in os.listdir(image_dir)
                   if os.path.splitext(n)[1].lower() in Image.registered_extensions())
    if not names:
        raise UserError(f'--images: no images in {image_dir} (any image PIL reads: .jpg, .png)')
    return names


def output_names(names, where):
    """Photo names -> the names of their aligned JPEGs, which must differ."""
    outs = [os.path.splitext(name)[0] + '.jpg' for name in names]
    twice = [out for out, n in Counter(outs).items() if n > 1]
    if twice:
        raise UserError(f'{where}: two photos would both be written as {twice[0]}: names must '
                        f'differ before their extension')
    return outs


def folder_jobs(image_dir, landmark_file, out_dir):
    """Your own photos: IMAGE_DIR/NAME for each row "NAME x1 y1 ... x5 y5" of a landmark file in
    CelebA's format, written as OUT_DIR/NAME (a .jpg name: the output is a JPEG)."""
    images = photo_names(image_dir)
    path, _, landmarks, names = read_table(*os.path.split(os.path.abspath(landmark_file)), float,
                                           values=10)
    outs = output_names(names, path)
    for name, lm in zip(names, landmarks):
        check_fit(lm, f'{path}, row {name}')
    no_image, no_row = sorted(set(names) - set(images)), sorted(set(images) - set(names))
    if no_image:
        raise UserError(f'{path}: {len(no_image)} row(s) name no image in {image_dir}, the first: '
                        f'{no_image[0]}')
    if no_row:
        raise UserError(f'{image_dir}: {len(no_row)} image(s) have no row in {path}, the first: '
                        f'{no_row[0]}')
    print(f'aligning {len(names)} images of {image_dir} with {landmark_file}')
    return [(os.path.join(image_dir, name), os.path.join(out_dir, out), lm)
            for name, out, lm in zip(names, outs, landmarks)]


# ---- finding the five points: this project's addition (dlib), not part of preprocess.py ---------
DLIB_PIP = 'pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0'
STRONG_FACE = 0.5       # faces scoring at least this are taken largest first, the rest by score
MAX_FIT_RESIDUAL = 0.5  # fit_residual: toy faces <= 0.01, detected <= 0.29, x and y swapped >= 0.74
SEARCH_SIDE = {'HOG': 2048, 'CNN': 512}  # longer side of each detector's copy: README, "photos"
MIN_FACE = 40           # pixels: HOG's 80-pixel window at one upsampling; smaller faces go unseen
DETECT_WORKERS = 4      # a 48 MP photo's search peaks near 1.5 GB: 4 workers fit in 8 GB
FOUND_LANDMARKS = 'landmarks.txt'


def dlib_models():
    """dlib, and the paths of the CNN detector and the 68-point predictor."""
    try:
        import dlib
    except ImportError:
        raise UserError(f'finding faces needs dlib, which is not installed: {DLIB_PIP} '
                        f'(or give the five points with --landmarks)')
    # Found, not imported: face_recognition_models' __init__ needs pkg_resources, which recent
    # setuptools dropped.
    spec = importlib.util.find_spec('face_recognition_models')
    models = os.path.join(spec.submodule_search_locations[0], 'models') if spec else ''
    files = [os.path.join(models, name) for name in
             ('mmod_human_face_detector.dat', 'shape_predictor_68_face_landmarks.dat')]
    if not all(os.path.isfile(f) for f in files):
        raise UserError(f'finding faces needs the model files of face-recognition-models, not '
                        f'found{" in " + models if spec else ""}: {DLIB_PIP}')
    return dlib, files


class FaceFinder:
    """dlib's HOG face detector (one upsampling), its CNN detector where HOG finds no face, and
    its 68-point shape predictor, from which CelebA's five points are taken (0-based: the means of
    36-41 and 42-47, the nose tip 30, the mouth corners 48 and 54), as FFHQ's alignment does.
    Each detector searches a copy no longer than its SEARCH_SIDE (photos within it: the photo
    itself), so that time and memory are bounded whatever the photo's size; the boxes are mapped
    back and the points found on the full photo. Above a bound the scores and order are the copy's."""
    def __init__(self):
        self.dlib, (cnn, predictor) = dlib_models()
        self.hog = self.dlib.get_frontal_face_detector()
        self.cnn = self.dlib.cnn_face_detection_model_v1(cnn)
        self.predictor = self.dlib.shape_predictor(predictor)

    def __call__(self, bgr, name):
        """The faces of photo NAME as (box (left, top, right, bottom), score, detector, 5x2
        points), in the order they are offered: a score of STRONG_FACE or more by size, largest
        first, then the rest by score (HOG also fires, weakly, on badges and patterns)."""
        h, w = bgr.shape[:2]
        if min(h, w) < MIN_FACE:
            raise UserError(f'{name}: no face: the image is {w} x {h} pixels, and a face takes at '
                            f'least {MIN_FACE} x {MIN_FACE}')
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        found = self.search(rgb, 'HOG', lambda img: zip(*self.hog.run(img, 1, 0.0)[:2]))
        if not found:   # the CNN finds faces HOG misses (10 of 60 toy photos)
            found = self.search(rgb, 'CNN', lambda img: [(d.rect, d.confidence)
                                                         for d in self.cnn(img, 1)])
        found.sort(key=lambda f: (0, -f[0].area()) if f[1] >= STRONG_FACE else (1, -f[1]))
        faces = []
        for box, score, detector, (sx, sy) in found:
            box = self.dlib.rectangle(*(round(v / s) for v, s in zip(
                (box.left(), box.top(), box.right(), box.bottom()), (sx, sy, sx, sy))))
            p = np.array([(q.x, q.y) for q in self.predictor(rgb, box).parts()], np.float64)
            five = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
            faces.append(((box.left(), box.top(), box.right(), box.bottom()), score, detector,
                          np.array(points_text(five).split(','), np.float64).reshape(5, 2)))
        return faces

    def search(self, rgb, detector, detect):
        """detect() on the copy: [(box on the copy, score, detector, copy/photo scales)]."""
        h, w = rgb.shape[:2]
        scale = min(1.0, SEARCH_SIDE[detector] / max(h, w))
        size = (round(w * scale), round(h * scale))
        img = rgb if scale == 1 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        if min(img.shape[:2]) < MIN_FACE:       # dlib's CNN crashes on slivers
            return []
        return [(box, score, detector, (size[0] / w, size[1] / h)) for box, score in detect(img)]


def points_text(lm):
    """X1,Y1,...,X5,Y5 as --landmarks takes it; points are rounded to it before use, so that
    the printed line aligns to the same bytes."""
    return ','.join(f'{v:.2f}' for v in np.ravel(lm))


def fit_residual(lm):
    """How far five points are from a face in CelebA's order: after the least-squares similarity
    that _get_align_5p_mat23_size_256 fits (without its y stretch), the largest distance of a
    point from the mean face, in the mean face's eye distances. Mirrored points (x and y swapped)
    and points out of order fit no similarity."""
    mf = mean_face_lm5p - mean_face_lm5p.mean(0)
    d = np.reshape(lm, (5, 2)) - np.reshape(lm, (5, 2)).mean(0)
    c3 = (d ** 2).sum()
    if c3 == 0:
        return np.inf
    a, b = (mf * d).sum() / c3, (mf[:, 0] * d[:, 1] - mf[:, 1] * d[:, 0]).sum() / c3
    fit = np.stack([a * d[:, 0] + b * d[:, 1], -b * d[:, 0] + a * d[:, 1]], 1)
    return np.linalg.norm(fit - mf, axis=1).max() / np.linalg.norm(mf[1] - mf[0])


def check_fit(lm, where):
    residual = fit_residual(lm)
    if residual > MAX_FIT_RESIDUAL:
        raise UserError(f'{where}: the five points do not fit a face (a point lies {residual:.2f} '
                        f'eye distances off, refused above {MAX_FIT_RESIDUAL}): give x before y, '
                        f'for the left eye, right eye, nose tip, left and right mouth corner')


_finder = None


def face_finder():
    """This process's FaceFinder (its predictor takes a second to load)."""
    global _finder
    _finder = _finder or FaceFinder()
    return _finder


def read_photo(path):
    """A photo as work() reads it (OpenCV: EXIF orientation applied), after read_image's checks,
    so that a missing, unreadable or too large photo is one line."""
    read_image(path)
    bgr = cv2.imread(path)
    if bgr is None:
        raise UserError(f'{path}: OpenCV cannot read this image; convert it to JPEG or PNG')
    return bgr


def find_points(path):
    """One photo of a folder, in a worker: (its first face's points, None) or (None, why)."""
    try:
        faces = face_finder()(read_photo(path), path)
        if not faces:
            return None, f'{path}: no face found (give its points in a landmark file)'
        check_fit(faces[0][3], path)
    except UserError as err:
        return None, str(err)
    return faces[0][3].ravel().tolist(), None


def found_jobs(image_dir, out_dir, num_workers):
    """--images without --landmarks: every photo's points found by FaceFinder and written to
    OUT_DIR/landmarks.txt in CelebA's format (a rerun reuses its rows, a user may correct one),
    then aligned as folder_jobs' are. Returns (jobs, photos that failed)."""
    names = photo_names(image_dir)
    outs = dict(zip(names, output_names(names, image_dir)))
    dlib_models()                               # a missing dlib stops here, before any work
    path = os.path.join(out_dir, FOUND_LANDMARKS)
    rows = {}
    if os.path.isfile(path):
        _, _, values, keys = read_table(out_dir, FOUND_LANDMARKS, float, values=10)
        for name, lm in zip(keys, values):
            check_fit(lm, f'{path}, row {name}')
            rows[name] = lm
    todo = [name for name in names if name not in rows]
    failed = []
    os.makedirs(out_dir, exist_ok=True)
    try:
        with Pool(min(num_workers, DETECT_WORKERS), face_finder) as pool:
            results = pool.imap(find_points, [os.path.join(image_dir, n) for n in todo])
            for name, (lm, why) in zip(todo, tqdm(results, total=len(todo), desc='detect')):
                rows[name] = lm
                failed += [why] if why else []
    finally:                                    # an interrupted run keeps the points it found
        lines = [f'{name} {points_text(rows[name]).replace(",", " ")}'
                 for name in names if rows.get(name)]
        tmp = own_temp(path)
        with open(tmp, 'w') as f:
            f.write('\n'.join([str(len(lines)), ' '.join(LANDMARK_NAMES), *lines]) + '\n')
        os.replace(tmp, path)
    print(f'found the points of {len(lines)} of {len(names)} photos: {path}')
    return [(os.path.join(image_dir, name), os.path.join(out_dir, outs[name]), rows[name])
            for name in names if rows.get(name)], failed


def draw_preview(bgr, faces, taken, lm, path):
    """The photo with every face found boxed (the one taken green, numbered as --face counts) and
    the five points used in red."""
    img = bgr.copy()
    thick = max(1, round(max(img.shape[:2]) / 300))
    for k, (box, _, _, _) in enumerate(faces):
        colour = (0, 200, 0) if k == taken else (0, 200, 255)
        cv2.rectangle(img, box[:2], box[2:], colour, thick)
        cv2.putText(img, str(k + 1), (box[0], box[1] - 4 * thick), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * thick, colour, thick)
    for x, y in np.reshape(lm, (5, 2)):
        cv2.circle(img, (round(x), round(y)), 2 * thick, (0, 0, 255), -1)
    if not cv2.imwrite(path, img):
        raise UserError(f'--preview {path}: could not be written')


def align_photo(image, landmarks, out, face=1, preview=None):
    """One photo, from its 5 points given on the command line or found by FaceFinder, as
    align_face_5p aligns."""
    out = out or os.path.join('aligned', os.path.splitext(os.path.basename(image))[0] + '.jpg')
    same = os.path.abspath(out) == os.path.abspath(image)
    if same or not out.lower().endswith(('.jpg', '.jpeg')):
        raise UserError(f'--out {out}: must be a .jpg name other than the photo\'s (the output '
                        f'is a JPEG)')
    if preview and not cv2.haveImageWriter(preview):
        raise UserError(f'--preview {preview}: not an image name (.jpg, .png, ...)')
    bgr = read_photo(image)
    h, w = bgr.shape[:2]
    faces = []
    if landmarks:
        try:
            lm = [float(v) for v in landmarks.split(',')]
        except ValueError:
            lm = []
        if len(lm) != 10:
            raise UserError(f'--landmarks: expected 10 numbers X1,Y1,...,X5,Y5, got {landmarks!r}')
    else:
        faces = face_finder()(bgr, image)
        if not faces:
            raise UserError(f'no face found in {image}; give its five points with --landmarks')
        if face > len(faces):
            raise UserError(f'--face {face}: {image} has {len(faces)} face(s) found')
        for k, (box, score, detector, _) in enumerate(faces):
            print(f'face {k + 1} of {len(faces)}: box {box[:2]}-{box[2:]}, score {score:.2f}, '
                  f'{detector} detector' + (' <- taken' if k == face - 1 else ''))
        lm = faces[face - 1][3].ravel().tolist()
        print(f'landmarks: {points_text(lm)}')
    if min(lm) < 0 or max(lm[0::2]) >= w or max(lm[1::2]) >= h:
        raise UserError(f'--landmarks: a point lies outside the {w}x{h} image {image}: '
                        f'give x,y pixel pairs, x to the right, y down')
    check_fit(lm, '--landmarks' if landmarks else f'{image}, face {face}')
    if preview:
        draw_preview(bgr, faces, face - 1, lm, preview)
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    why = work((image, out, lm), skip_done=False)
    if why != 'aligned':
        raise UserError(why)
    print(f'wrote {out}' + (f' and {preview}' if preview else ''))


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
        if args.image:
            return align_photo(args.image, args.landmarks, args.out, args.face, args.preview)
        out_dir = args.out_dir or os.path.join(args.data_dir, 'align_5p')
        failed = []
        if args.images and args.landmarks:
            jobs = folder_jobs(args.images, args.landmarks, out_dir)
        elif args.images:
            jobs, failed = found_jobs(args.images, out_dir, max(1, args.num_workers))
        else:
            jobs = celeba_jobs(args.data_dir, out_dir, args.layout)
        main(jobs, out_dir, max(1, args.num_workers), failed)
    except UserError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    cli()
