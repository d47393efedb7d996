"""genegan.py edit: your photo itself, with an attribute put into its face (-t TARGET) or taken
out (--remove), at the photo's own size. The face is found and aligned as align.py --image finds
and aligns it (preprocess.py), brought to the model's size as swap's inputs are (test.py), edited
in the demos' terms, and pasted back through the inverse of the alignment: the model's output
where it changes the face, elsewhere the photo's own pixels plus the change, smoothed."""
import math
import os

import cv2
import numpy as np
import torch

from align import ALIGNED_SIZE, align_face_5p, get_align_5p_mat23, read_image, refuse
from extras import photos
from genegan import (_batch, _image, at_least, atomic_write, inference, load_model,
                     pick_device)

SHARED_FLAGS = ('model', 'device')
# At the model's size (64; scaled at 128). Measured on held-out toy faces: docs/edit.md.
CHANGE_SIGMA = 0.75         # px: the change is smoothed so that the model's texture stays out
MASK_SIGMA = 1.0            # px: |change| averaged over a neighbourhood before the thresholds
MASK_LOW, MASK_HIGH = 10.0, 25.0   # grey levels: no output below, only output above
FEATHER_SIGMA = 1.5         # px: the mask's edge
BORDER = 4.0                # px: the crop's own edge fades out over this width
JPEG_QUALITY = 95
BAND_ROWS = 256             # the photo is pasted in bands of rows: memory bounded by its width


def add_flags(add):
    add('photo', help='your photo (any size; its EXIF orientation applied, as align.py does)')
    add('-t', '--target', help='an aligned face with the attribute (as swap -t takes it): '
        'the photo\'s face gains it')
    add('--remove', action='store_true', help='the photo\'s face loses its own attribute')
    add('--strength', type=float, help='with -t: the attribute code scaled by S, as '
        'interpolation scales it (default 1)')
    add('--face', type=at_least(1), default=1, metavar='K', help='the K-th face found')
    add('--landmarks', help='the five points X1,Y1,...,X5,Y5 instead of a face search')
    add('--out', help='the edited photo, JPEG (quality 95) or PNG by its name '
        '(default: edited/PHOTO.jpg)')
    add('--preview', help='also a picture of the steps: the photo, the edited photo, the '
        'aligned face, the model\'s output and the pasted crop')


def writable(path, flag):
    """PATH can be written: an image name whose nearest existing folder is a writable folder."""
    refuse(not cv2.haveImageWriter(path), f'{flag} {path}: not an image name (.jpg, .png, ...)')
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    refuse(not os.path.isdir(folder) or not os.access(folder, os.W_OK),
           f'{flag} {path}: {folder} is not a folder that can be written')


def edit_face(model, face, target, strength):
    """test.py's codes on the aligned face (RGB): with a target, swap_attribute's Bx with x scaled
    as interpolation scales it, joiner(B, S * x); without, Ae, joiner(A, 0) of the face itself.
    Each beside the model's reconstruction of the same face from its own codes."""
    with inference(model):
        if target is None:                      # the face has the attribute: it is Ax
            A, x = model.splitter(_batch(model, face))
            return _image(model.joiner(A, torch.zeros_like(x))), _image(model.joiner(A, x))
        A, x = model.splitter(_batch(model, target))    # test.py feeds Ax = att_img, Be = src_img
        B, e = model.splitter(_batch(model, face))
        return _image(model.joiner(B, x * strength)), _image(model.joiner(B, e))


def blend_maps(out, rec):
    """At the model's size: the change (out - rec) smoothed, and the mask where the output itself
    is taken, both fading out at the crop's edge."""
    n = len(out)
    scale = n / 64
    change = out - rec
    smooth = cv2.GaussianBlur(change, (0, 0), CHANGE_SIGMA * scale)
    size = cv2.GaussianBlur(np.abs(change).mean(2), (0, 0), MASK_SIGMA * scale)
    mask = np.clip((size - MASK_LOW) / (MASK_HIGH - MASK_LOW), 0, 1)
    mask = cv2.GaussianBlur(mask, (0, 0), FEATHER_SIGMA * scale)
    edge = np.minimum(np.arange(n), np.arange(n)[::-1])     # 0 on the crop's outer pixels, so
    edge = np.clip(edge / (BORDER * scale), 0, 1)            # that nothing lands outside it
    edge = np.minimum.outer(edge, edge).astype(np.float32)
    return smooth * edge[..., None], mask * edge


def paste(bgr, mat23, face, out, rec):
    """The photo (BGR uint8) with the edit of its aligned FACE (BGR) pasted: photo + mask * (out -
    photo) + (1 - mask) * smoothed change, each map taken from the crop through the inverse of
    the alignment MAT23. Only the crop's bounding box is computed, BAND_ROWS rows at a time; every
    pixel outside the crop keeps its bytes. Returns (edited photo, the pasted crop at 256x256)."""
    n = len(out)
    smooth, mask = blend_maps(out, rec)
    k = n / ALIGNED_SIZE                        # crop pixel c lies at k * c + k / 2 - 0.5 at n
    to_n = mat23 * k
    to_n[:, 2] += k / 2 - 0.5
    corners = cv2.transform(np.float64([[[0, 0], [ALIGNED_SIZE, 0], [0, ALIGNED_SIZE],
                                         [ALIGNED_SIZE, ALIGNED_SIZE]]]),
                            cv2.invertAffineTransform(mat23))[0]
    h, w = bgr.shape[:2]
    left, top = np.clip(np.floor(corners.min(0)).astype(int), 0, [w, h])
    right, bottom = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, [w, h])
    edited = bgr.copy()
    maps = [(out[..., ::-1].copy(), cv2.BORDER_REPLICATE), (smooth[..., ::-1].copy(),
            cv2.BORDER_CONSTANT), (mask, cv2.BORDER_CONSTANT)]
    for y0 in range(top, bottom, BAND_ROWS):
        rows = min(BAND_ROWS, bottom - y0)
        band = to_n.copy()
        band[:, 2] += to_n[:, :2] @ [left, y0]
        o, s, m = (cv2.warpAffine(src, band, (right - left, rows), flags=cv2.INTER_LINEAR
                                  | cv2.WARP_INVERSE_MAP, borderMode=border)
                   for src, border in maps)
        photo = bgr[y0:y0 + rows, left:right].astype(np.float32)
        m = m[..., None]
        new = photo + m * (o - photo) + (1 - m) * s
        edited[y0:y0 + rows, left:right] = np.clip(np.rint(new), 0, 255).astype(np.uint8)
    o, s, m = (cv2.resize(src, (ALIGNED_SIZE, ALIGNED_SIZE), interpolation=cv2.INTER_LINEAR)
               for src, _ in maps)
    m = m[..., None]
    crop = np.clip(np.rint(face + m * (o - face) + (1 - m) * s), 0, 255).astype(np.uint8)
    return edited, crop


def preview_picture(bgr, edited, face, out, crop):
    """Two rows: the photo and the edited photo (each 512 px high), then the aligned face, the
    model's output and the pasted crop (256x256 each)."""
    top = [cv2.resize(im, (round(im.shape[1] * 512 / im.shape[0]), 512),
                      interpolation=cv2.INTER_AREA) for im in (bgr, edited)]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    bottom = [face, cv2.resize(out, (ALIGNED_SIZE, ALIGNED_SIZE),
                               interpolation=cv2.INTER_NEAREST), crop]
    rows = [np.concatenate(top, 1), np.concatenate(bottom, 1)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    return np.concatenate(rows, 0)


def main(args):
    """edit: check everything the user gave, then find, align, edit, paste, write."""
    refuse(bool(args.target) == args.remove, 'edit: give either -t TARGET (the photo\'s face '
           'gains its attribute) or --remove (the face loses its own), one of them')
    refuse(args.strength is not None and (args.remove or not math.isfinite(args.strength)),
           f'--strength {args.strength}: a finite number, with -t (the attribute code\'s scale)')
    refuse(args.face > 1 and args.landmarks, '--face K picks among the faces found: give it '
           'without --landmarks')
    out = args.out or os.path.join('edited', os.path.splitext(os.path.basename(args.photo))[0]
                                   + '.jpg')
    refuse(os.path.abspath(out) == os.path.abspath(args.photo),
           f'--out {out}: the photo itself; choose another name')
    writable(out, '--out')
    if args.preview:
        writable(args.preview, '--preview')
    device = pick_device(args.device)
    target = read_image(args.target) if args.target else None
    model = load_model(args, device)[2]
    bgr = photos.read_photo(args.photo)
    lm, _ = photos.photo_points(args.photo, bgr, args.landmarks, args.face)
    mat23 = get_align_5p_mat23(np.reshape(lm, (5, 2)), ALIGNED_SIZE)
    face = align_face_5p(bgr, lm)                   # preprocess.py's crop
    out_face, rec = edit_face(model, face[..., ::-1], target,      # RGB, as swap reads it
                              1.0 if args.strength is None else args.strength)
    edited, crop = paste(bgr, mat23, face, out_face, rec)
    for path, img in ((out, edited), (args.preview, args.preview and preview_picture(
            bgr, edited, face, out_face[..., ::-1], crop))):
        if path:
            os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
            jpeg = path.lower().endswith(('.jpg', '.jpeg'))
            ok, data = cv2.imencode(os.path.splitext(path)[1], img,
                                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else [])
            refuse(not ok, f'{path}: could not be encoded')
            atomic_write([path], data.tobytes())
    print(f'wrote {out}' + (f' and {args.preview}' if args.preview else ''))
