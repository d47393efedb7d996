"""Your own photos for align.py (this project's addition; preprocess.py reads CelebA only):
one photo (--image) or a folder (--images), from five points given in CelebA's order (left eye,
right eye, nose tip, left mouth corner, right mouth corner; pixels), on the command line or in a
landmark file of CelebA's format (name x1 y1 ... x5 y5 rows, .txt or .csv), or found by dlib
(FaceFinder); a folder's found points are written to OUT/landmarks.txt. Each photo is aligned by
align.work, as preprocess.py aligns CelebA."""
import importlib.util
import os
from collections import Counter
from multiprocessing import Pool

import cv2
import numpy as np
from tqdm import tqdm

from align import (LANDMARK_NAMES, UserError, image_names, mean_face_lm5p, own_temp, read_image,
                   read_table, refuse, work)


def photo_names(image_dir):
    """The images of IMAGE_DIR (align.image_names), at least one."""
    refuse(not os.path.isdir(image_dir), f'--images: folder not found: {image_dir}')
    names = image_names(image_dir)
    refuse(not names, f'--images: no images in {image_dir} (any image PIL reads: .jpg, .png)')
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


# ---- finding the five points with dlib ----------------------------------------------------------
DLIB_PIP = 'pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0'
STRONG_FACE = 0.5       # faces scoring at least this are taken largest first, the rest by score
MAX_FIT_RESIDUAL = 0.5  # fit_residual: toy faces <= 0.01, detected <= 0.29, x and y swapped >= 0.74
SEARCH_SIDE = {'HOG': 2048, 'CNN': 512}  # longer side of each detector's copy: README, "photos"
MIN_FACE = 40           # pixels: HOG's 80-pixel window at one upsampling; smaller faces go unseen
DETECT_WORKERS = 4      # a 48 MP photo's search peaks at 1.2 GB: 4 workers fit in 8 GB
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
    refuse(not all(os.path.isfile(f) for f in files),
           f'finding faces needs the model files of face-recognition-models, not '
           f'found{" in " + models if spec else ""}: {DLIB_PIP}')
    return dlib, files


class FaceFinder:
    """dlib's HOG face detector (one upsampling), its CNN detector where HOG finds no face, and
    its 68-point shape predictor, from which CelebA's five points are taken (0-based: the means of
    36-41 and 42-47, the nose tip 30, the mouth corners 48 and 54), as FFHQ's alignment does.
    Each detector searches a copy no longer than its SEARCH_SIDE (photos within it: the photo
    itself), so that time and memory are bounded whatever the photo's size; the boxes are mapped
    back and the points found on the full photo. Above a bound, scores and order are the copy's."""
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
        refuse(min(h, w) < MIN_FACE,
               f'{name}: no face: the image is {w} x {h} pixels, and a face takes at '
               f'least {MIN_FACE} x {MIN_FACE}')
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        found = self.search(rgb, 'HOG', lambda img: zip(*self.hog.run(img, 1, 0.0)[:2]))
        if not found:   # the CNN finds faces HOG misses (10 of 60 toy photos)
            found = self.search(rgb, 'CNN', lambda img: [(d.rect, d.confidence)
                                                         for d in self.cnn(img, 1)])
        found.sort(key=lambda f: (0, -f[0].area()) if f[1] >= STRONG_FACE else (1, -f[1]))
        faces = []
        for box, score, detector, (sx, sy) in found:
            box = tuple(round(v / s) for v, s in zip(
                (box.left(), box.top(), box.right(), box.bottom()), (sx, sy, sx, sy)))
            parts = self.predictor(rgb, self.dlib.rectangle(*box)).parts()
            p = np.array([(q.x, q.y) for q in parts], np.float64)
            five = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
            faces.append((box, score, detector,
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
    refuse(residual > MAX_FIT_RESIDUAL,
           f'{where}: the five points do not fit a face (a point lies {residual:.2f} '
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
    refuse(bgr is None, f'{path}: OpenCV cannot read this image; convert it to JPEG or PNG')
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
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)     # as align_photo's --out
    refuse(not cv2.imwrite(path, img), f'--preview {path}: could not be written')


def align_photo(image, landmarks, out, face=1, preview=None):
    """One photo, from its 5 points given on the command line or found by FaceFinder, as
    align_face_5p aligns."""
    out = out or os.path.join('aligned', os.path.splitext(os.path.basename(image))[0] + '.jpg')
    same = os.path.abspath(out) == os.path.abspath(image)
    refuse(same or not out.lower().endswith(('.jpg', '.jpeg')),
           f'--out {out}: must be a .jpg name other than the photo\'s (the output '
           f'is a JPEG)')
    refuse(preview and not cv2.haveImageWriter(preview),
           f'--preview {preview}: not an image name (.jpg, .png, ...)')
    bgr = read_photo(image)
    lm, faces = photo_points(image, bgr, landmarks, face)
    if preview:
        draw_preview(bgr, faces, face - 1, lm, preview)
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    why = work((image, out, lm), skip_done=False)
    refuse(why != 'aligned', why)
    print(f'wrote {out}' + (f' and {preview}' if preview else ''))


def photo_points(image, bgr, landmarks, face=1):
    """The five points of photo IMAGE (read as BGR): the 10 comma-separated numbers LANDMARKS,
    or the FACE-th face that FaceFinder offers (each face found is printed). Returns (points,
    faces found)."""
    h, w = bgr.shape[:2]
    faces = []
    if landmarks:
        try:
            lm = [float(v) for v in landmarks.split(',')]
        except ValueError:
            lm = []
        refuse(len(lm) != 10,
               f'--landmarks: expected 10 numbers X1,Y1,...,X5,Y5, got {landmarks!r}')
    else:
        faces = face_finder()(bgr, image)
        refuse(not faces, f'no face found in {image}; give its five points with --landmarks')
        refuse(face > len(faces), f'--face {face}: {image} has {len(faces)} face(s) found')
        for k, (box, score, detector, _) in enumerate(faces):
            print(f'face {k + 1} of {len(faces)}: box {box[:2]}-{box[2:]}, score {score:.2f}, '
                  f'{detector} detector' + (' <- taken' if k == face - 1 else ''))
        lm = faces[face - 1][3].ravel().tolist()
        print(f'landmarks: {points_text(lm)}')
    refuse(min(lm) < 0 or max(lm[0::2]) >= w or max(lm[1::2]) >= h,
           f'--landmarks: a point lies outside the {w}x{h} image {image}: '
           f'give x,y pixel pairs, x to the right, y down')
    check_fit(lm, '--landmarks' if landmarks else f'{image}, face {face}')
    return lm, faces
