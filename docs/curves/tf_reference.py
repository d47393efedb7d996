"""Records testdata/genegan_tf_reference.npz, the numbers the parity tests trust, by running the
official TF code (github.com/Prinsphield/GeneGAN: model.py, test.py and preprocess.py, unmodified)
under tensorflow.compat.v1. An experiment beside the project, in its own venv with TensorFlow
(checked with TensorFlow 2.21; see docs/curves/README.md and docs/parity.md for every key):

    python docs/curves/tf_reference.py --official GENEGAN_CHECKOUT --out ref.npz \
        [--like testdata/genegan_tf_reference.npz]
    python docs/curves/tf_reference.py --resize 64 --out tf_resize_reference.npz
    python docs/curves/tf_reference.py --resize 128 --out tf_resize_reference_128.npz

The weights follow the recipe in the record's meta (every variable drawn from its own
np.random.RandomState seed), which the tests rebuild; the batches are the next draws of
np.random.RandomState(7). The positions at which gradients and weights are sampled, and the
canvas and landmark rows of the alignment keys, were not recorded with a recipe: --like takes them
from an earlier record, so that the two can be compared key by key; without it they are drawn here.
--resize records tf.image.resize_images at that size, the op dataset.py reads every image with.
"""
import argparse
import json
import os
import sys
import tempfile
import types

import numpy as np

os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')     # TF's own float32 kernels, run to run
from tf_official import official_model, tf  # noqa: E402

BATCH, ITERS, LR, SAMPLES = 4, 2, 5e-5, 32
RESIZE_SHAPES = {64: [[218, 178], [256, 256], [100, 100], [200, 300], [48, 80], [687, 409],
                      [64, 64], [65, 63]],
                 128: [[218, 178], [256, 256], [100, 100], [200, 300], [48, 80], [687, 409],
                       [128, 128], [129, 127]]}
RESIZE_SEEDS = {64: 1000, 128: 3000}
NOTES = [
    'each variable v of `variables` is drawn as np.random.RandomState(seed): normal -> '
    'standard_normal(shape)*scale+offset; uniform -> uniform(low, high, shape); cast to float32',
    'grad0/*: gradients of loss_G (G vars) and loss_D (D vars) at the seeded weights on input/Ax, '
    'input/Be; summaries only: sum, sumsq, maxabs and values at idx (flat C-order in TF layout)',
    'iterK: losses on the pre-update weights (fetched in their own run), then D step (RMSProp '
    'decay=0.8, momentum=0, eps=1e-10, slots start at ms=1) on d_Ax/d_Be, then clip of all D '
    'trainables to [-0.01, 0.01], then G step on g_Ax/g_Be; losses are the pre-update values',
    'after/*: variables after the K iterations; moving_mean/moving_variance stored whole (their '
    'in-step update order is not fixed in TF, compare loosely)',
    'infer/*: is_train=False graph (batch 1), same recipe incl. moving statistics; swap_out1 = Bx '
    '(src gains the attribute), swap_out2 = Ae (att loses it)',
    'resize/*: tf.image.resize_images as dataset.py calls it (bilinear, align_corners=False, no '
    'half-pixel centres)',
    'align/*: preprocess.get_align_5p_mat23 and align_face_5p on a 409x687 canvas']


def recipe(names_shapes):
    """A recipe per variable, sorted by name, seeds from 1000: kernels W N(0, 0.02), BatchNorm
    gamma N(1, 0.1), moving_variance U(0.5, 1.5), and the rest (beta, moving_mean, biases)
    N(0, 0.1)."""
    out = []
    for k, (name, shape) in enumerate(sorted(names_shapes)):
        leaf = name.split('/')[-1]
        v = dict(name=name, shape=list(shape), dist='normal', seed=1000 + k)
        if leaf == 'moving_variance':
            v.update(dist='uniform', low=0.5, high=1.5)
        elif leaf == 'W':
            v.update(scale=0.02, offset=0.0)
        else:
            v.update(scale=0.1, offset=1.0 if leaf == 'gamma' else 0.0)
        out.append(v)
    return out


def draw(v):
    rs = np.random.RandomState(v['seed'])
    a = (rs.standard_normal(v['shape']) * v['scale'] + v['offset'] if v['dist'] == 'normal'
         else rs.uniform(v['low'], v['high'], v['shape']))
    return a.astype(np.float32)


def model_variables():
    return {v.name[:-2]: v for v in tf.global_variables()
            if v.name.startswith(('G_', 'D_')) and 'RMSProp' not in v.name}


def summary(out, key, value, idx):
    value = np.asarray(value)
    out[f'{key}/sum'] = np.float64(value.astype(np.float64).sum())
    out[f'{key}/sumsq'] = np.float64((value.astype(np.float64) ** 2).sum())
    out[f'{key}/maxabs'] = np.float64(np.abs(value).max())
    out[f'{key}/idx'] = idx
    out[f'{key}/samples'] = value.ravel()[idx].astype(np.float32)


def training(official, out, like, rs, own):
    """model.py's training graph: forward, losses, gradients, ITERS iterations as recorded."""
    model = official_model(official, BATCH)
    names = model_variables()
    variables = recipe((n, v.shape.as_list()) for n, v in names.items())
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    for v in variables:
        names[v['name']].load(draw(v), sess)
    shape = (BATCH, 64, 64, 3)
    out['input/Ax'], out['input/Be'] = (rs.randint(0, 256, shape).astype(np.uint8) for _ in 'AB')
    feed = {model.Ax: out['input/Ax'], model.Be: out['input/Be'], model.g_lr: LR, model.d_lr: LR}
    fetch = {k: getattr(model, k) for k in ('A', 'x', 'B', 'e', 'Ax2', 'Be2', 'Bx', 'Ae',
                                            'real_Ax', 'fake_Bx', 'real_Be', 'fake_Ae')}
    for k, value in sess.run(fetch, feed).items():
        out[f'forward/{k}'] = value
    losses = dict(model.G_loss, loss_G_nodecay=model.loss_G_nodecay,
                  loss_G_decay=model.loss_G_decay,
                  loss_G=model.loss_G, **model.D_loss, loss_D=model.loss_D)
    for k, value in sess.run(losses, feed).items():
        out[f'loss0/{k}'] = np.float64(value)
    trainable = {v.name[:-2]: v for v in model.g_var_list + model.d_var_list}
    grads = (tf.gradients(model.loss_G, model.g_var_list)
             + tf.gradients(model.loss_D, model.d_var_list))
    idx = {}
    for (name, var), grad in zip(trainable.items(), sess.run(grads, feed)):
        n = int(np.prod(var.shape.as_list()))
        idx[name] = (like[f'grad0/{name}/idx'] if like is not None
                     else np.sort(own.choice(n, min(SAMPLES, n), replace=False)))
        summary(out, f'grad0/{name}', grad, idx[name])
    g_losses = dict(model.G_loss, loss_G_nodecay=model.loss_G_nodecay,
                    loss_G_decay=model.loss_G_decay, loss_G=model.loss_G)
    d_losses = dict(model.D_loss, loss_D=model.loss_D)
    for i in range(ITERS):
        for step in ('d_Ax', 'd_Be', 'g_Ax', 'g_Be'):
            out[f'iter{i}/{step}'] = rs.randint(0, 256, shape).astype(np.uint8)
        d_feed = {model.Ax: out[f'iter{i}/d_Ax'], model.Be: out[f'iter{i}/d_Be'],
                  model.g_lr: LR, model.d_lr: LR}
        g_feed = {model.Ax: out[f'iter{i}/g_Ax'], model.Be: out[f'iter{i}/g_Be'],
                  model.g_lr: LR, model.d_lr: LR}
        for k, value in sess.run(d_losses, d_feed).items():
            out[f'iter{i}/d/{k}'] = np.float64(value)
        sess.run(model.d_opt, d_feed)
        sess.run(model.clip_d)
        for k, value in sess.run(g_losses, g_feed).items():
            out[f'iter{i}/g/{k}'] = np.float64(value)
        sess.run(model.g_opt, g_feed)
    for name, value in sess.run(names).items():
        if 'moving_' in name:
            out[f'after/{name}'] = value
        else:
            summary(out, f'after/{name}', value, idx[name])
    out['after/D_Ax/fct/W/full'] = sess.run(names['D_Ax/fct/W'])
    ms = [v for v in tf.global_variables() if v.name == 'D_Ax/fct/W/RMSProp:0'][0]
    out['after/D_Ax/fct/W/RMSProp_ms'] = sess.run(ms)
    sess.close()
    return variables


def inference(out, variables, rs):
    """test.py's swap_attribute, interpolation (3 steps) and interpolation_matrix (3x3), as they
    run, on a checkpoint of the recipe's weights; misc.imsave hands over what it is given."""
    tf.reset_default_graph()
    import model as official_module         # imported by official_model, with its config
    model = official_module.Model(is_train=False, nhwc=[1, 64, 64, 3])
    names = model_variables()
    saved = {}
    sys.modules['scipy'] = types.SimpleNamespace(misc=types.SimpleNamespace(
        imsave=lambda path, img: saved.__setitem__(os.path.basename(path), np.asarray(img))))
    sys.modules['scipy.misc'] = sys.modules['scipy'].misc
    import test as official_test
    with tempfile.TemporaryDirectory() as ckpt_dir, tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for v in variables:
            names[v['name']].load(draw(v), sess)
        tf.train.Saver().save(sess, os.path.join(ckpt_dir, 'model.ckpt'))
        out['infer/src'], out['infer/att'] = (rs.randint(0, 256, (1, 64, 64, 3)).astype(np.uint8)
                                              for _ in 'sa')
        out['infer/atts'] = rs.randint(0, 256, (4, 64, 64, 3)).astype(np.uint8)
        src, att, atts = (out[k].astype(np.float32)
                          for k in ('infer/src', 'infer/att', 'infer/atts'))
        cwd = os.getcwd()
        os.chdir(ckpt_dir)                  # test.py writes its images to the current folder
        try:
            official_test.swap_attribute(src, att, ckpt_dir, model, '')
            official_test.interpolation(src, att, 3, ckpt_dir, model, '')
            official_test.interpolation_matrix(src, atts, (3, 3), ckpt_dir, model, '')
        finally:
            os.chdir(cwd)
    out['infer/swap_out1'] = saved['out1.jpg'][None].astype(np.float32)
    out['infer/swap_out2'] = saved['out2.jpg'][None].astype(np.float32)
    out['infer/interpolation_n3'] = saved['interpolation.jpg'].astype(np.float32)
    out['infer/matrix_3x3'] = saved['four_matrix.jpg'].astype(np.float32)


def resize_align(out, like, rs, own):
    """dataset.py's resize of a 256x256 image, and preprocess.py's 5-point alignment."""
    out['resize/in256'] = rs.randint(0, 256, (256, 256, 3)).astype(np.uint8)
    out['resize/out64'] = resize(out['resize/in256'], 64)
    import preprocess
    if like is not None:
        out['align/landmarks'], out['align/image'] = like['align/landmarks'], like['align/image']
    else:
        out['align/landmarks'] = np.array([[165, 184, 244, 176, 196, 249, 194, 271, 266, 260]])
        out['align/image'] = (own.randint(0, 8, (687, 409, 3)) * 32).astype(np.uint8)
    out['align/mat23'] = np.stack([preprocess.get_align_5p_mat23(np.reshape(lm, (5, 2)), 256)
                                   for lm in out['align/landmarks']])
    out['align/aligned0'] = preprocess.align_face_5p(out['align/image'], out['align/landmarks'][0])


def resize(image, size):
    """dataset.py read_images: tf.image.resize_images(image, [size, size]) of the float image."""
    with tf.Session(graph=tf.Graph()) as sess:
        op = tf.image.resize_images(tf.cast(tf.constant(image), tf.float32), size=[size, size])
        return sess.run(op)


def versions():
    """What the record ran under: the alignment keys depend on OpenCV's rounding (another OpenCV
    moves align/aligned0 by a grey level), the rest on TensorFlow and its Keras 2."""
    import cv2
    import tf_keras
    return dict(tensorflow=tf.__version__, tf_keras=tf_keras.__version__, opencv=cv2.__version__,
                numpy=np.__version__, python=sys.version.split()[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--official', help='a checkout of Prinsphield/GeneGAN')
    p.add_argument('--like', help='an earlier record: its sample positions and alignment inputs')
    p.add_argument('--resize', type=int, choices=sorted(RESIZE_SHAPES),
                   help='record only the resize reference at this size')
    p.add_argument('--out', required=True)
    args = p.parse_args()
    if args.resize:
        size = args.resize
        out = {f'resize/{k}': resize(np.random.RandomState(RESIZE_SEEDS[size] + k)
                                     .randint(0, 256, (h, w, 3)).astype(np.uint8), size)
               for k, (h, w) in enumerate(RESIZE_SHAPES[size])}
        out['meta'] = json.dumps(dict(
            recipe=f'input k: np.random.RandomState({RESIZE_SEEDS[size]} + k).randint(0, 256, '
                   f'(h, w, 3)).astype(np.uint8), then cast to float32',
            op=f'tf.compat.v1.image.resize_images(tf.cast(image, tf.float32), size=[{size}, '
               f'{size}]) (dataset.py read_images{" at 128" if size == 128 else ""})',
            **versions(), shapes=RESIZE_SHAPES[size]))
        np.savez(args.out, **out)
        return
    if not args.official:
        p.error('--official is needed (or --resize)')
    sys.path.insert(0, args.official)
    like = np.load(args.like) if args.like else None
    rs, own = np.random.RandomState(7), np.random.RandomState(8)  # batches; what --like gives
    out = {}
    variables = training(args.official, out, like, rs, own)
    inference(out, variables, rs)
    resize_align(out, like, rs, own)
    out['meta'] = json.dumps(dict(
        source='official GeneGAN TensorFlow code (model.py, test.py, dataset.py, preprocess.py), '
               'run under tf.compat.v1', **versions(), batch=BATCH, lr=LR,
        iters=ITERS, layout='TensorFlow NHWC; weights in TF layout', variables=variables,
        variables_infer=variables, notes=NOTES))
    np.savez(args.out, **out)


if __name__ == '__main__':
    main()
