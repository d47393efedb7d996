"""Parity: the port against numbers recorded by running the official TensorFlow code
(testdata/genegan_tf_reference.npz and the resize references tf_resize_reference*.npz; how they
are recorded, what each key holds and why each tolerance is what it is: docs/parity.md).
Relative error is max|port - ref| / max|ref|. Run alone: python -m pytest -q test_parity.py
"""
import copy
import functools
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import align
import genegan as G
from test_genegan import D_LOSS_KEYS, G_LOSS_KEYS

HERE = os.path.dirname(os.path.abspath(__file__))
REF = np.load(os.path.join(HERE, 'testdata', 'genegan_tf_reference.npz'))
META = json.loads(str(REF['meta']))

TOL_FORWARD = 1e-4          # forward/*, infer/*
TOL_LOSS_ABS, TOL_LOSS_REL = 1e-5, 1e-3   # loss0/*, iterK/*/*
TOL_GRAD_SAMPLES = 5e-2     # grad0/*/samples
TOL_GRAD_NORM = 5e-3        # grad0/* sqrt(sumsq)
TOL_AFTER = 1e-3            # after/*/samples, after/D_Ax/fct/W/full
TOL_RMSPROP_MS = 1e-4       # after/D_Ax/fct/W/RMSProp_ms
TOL_MOVING = 5e-3           # after/*moving_*
TOL_ALIGN_MAT = 1e-9        # align/mat23
# --bf16 (not the TF code's precision), measured on the two recorded iterations: G losses within
# 7.4e-4 relative (Bx, Ae: means of the critics' outputs). D losses are differences of critic
# outputs, so they are held to the iteration's largest |D loss|: within 0.045 of it at iteration
# 0 (1.01) and 0.16 at iteration 1 (1.6e-5: the clipped critics). Weights after the iterations
# within 1.4e-3 (D), 5.8e-4 (moving statistics) and 8.2e-3 (the fc's RMSProp ms); G's moves,
# taken together, within 1.2e-2 of TF's.
TOL_BF16_LOSS_G, TOL_BF16_LOSS_D = 2e-3, 0.3
TOL_BF16_AFTER, TOL_BF16_MOVING, TOL_BF16_MS, TOL_BF16_G_MOVE = 5e-3, 5e-3, 3e-2, 3e-2



def rel_err(port, ref):
    port, ref = np.asarray(port, np.float64), np.asarray(ref, np.float64)
    assert port.shape == ref.shape, (port.shape, ref.shape)
    scale = np.abs(ref).max()
    diff = np.abs(port - ref).max()
    return diff / scale if scale > 0 else diff


@functools.lru_cache(maxsize=None)
def recipe(key):
    """The weight recipe of META[key] (docs/parity.md): RandomState(seed) draws, cast to float32.
    Built once per key; callers that change the dict take a copy."""
    out = {}
    for v in META[key]:
        rs = np.random.RandomState(v['seed'])
        if v['dist'] == 'normal':
            a = rs.standard_normal(v['shape']) * v['scale'] + v['offset']
        else:
            a = rs.uniform(v['low'], v['high'], v['shape'])
        out[v['name']] = a.astype(np.float32)
    return out


def nchw(key):
    return torch.from_numpy(REF[key].astype(np.float32)).permute(0, 3, 1, 2)


def nhwc(t):
    t = t.detach()
    return (t.permute(0, 2, 3, 1) if t.dim() == 4 else t).numpy()


@functools.lru_cache(maxsize=None)
def seeded_template(infer):
    model = G.GeneGAN()
    model.load_tf_variables(recipe('variables_infer' if infer else 'variables'))
    return model


def seeded_model(infer=False):
    """A model with the recipe's weights: a copy of one built once (0.02 s instead of 0.2 s)."""
    return copy.deepcopy(seeded_template(infer))


def assert_loss_close(port, ref, what):
    port, ref = float(port), float(ref)
    assert abs(port - ref) <= TOL_LOSS_ABS + TOL_LOSS_REL * abs(ref), (what, port, ref)


# ---------------------------------------------------------------------------- shapes and weights
def test_shapes():
    model = G.GeneGAN()
    img = torch.rand(2, 3, 64, 64) * 255
    A, x = model.splitter(img)
    assert A.shape == (2, 384, 8, 8) and x.shape == (2, 128, 8, 8)
    out = model.joiner(A, x)
    assert out.shape == (2, 3, 64, 64)
    assert 0 <= out.min() and out.max() <= 255
    assert model.D_Ax(out).shape == (2, 1) and model.D_Be(img).shape == (2, 1)
    A, x = G.GeneGAN(second_ratio=0.5).splitter(img)
    assert A.shape == (2, 256, 8, 8) and x.shape == (2, 256, 8, 8)


def test_shapes_and_parameters_at_128():
    """One more stride-2 layer a network: 8x8 codes as at 64, 128x128 images."""
    model, img = G.GeneGAN(img_size=128), torch.rand(1, 3, 128, 128) * 255
    t = G.build_model(model, img, img)
    assert t['A'].shape == (1, 384, 8, 8) and t['x'].shape == (1, 128, 8, 8)
    assert all(t[k].shape == (1, 3, 128, 128) for k in ('Ax2', 'Be2', 'Bx', 'Ae'))
    assert all(t[k].shape == (1, 1) for k in ('real_Ax', 'fake_Bx', 'real_Be', 'fake_Ae'))
    small = G.GeneGAN()
    count = [sum(p.numel() for p in m.parameters()) for m in (small, model)]
    assert count[1] - count[0] == 13_104_384
    names = set(model.tf_state()) - set(small.tf_state())
    assert {'G_splitter/conv4/W', 'G_joiner/deconv4/W', 'D_Ax/conv5/batch_normalization/gamma',
            'D_Be/conv5/W', 'G_joiner/deconv3/batch_normalization/moving_mean'} <= names
    assert model.joiner.deconv3.W.shape == (256, 128, 4, 4)
    assert model.splitter.conv4.W.std().item() == pytest.approx(0.02, rel=0.01)


def test_init_matches_tf_initialisers():
    torch.manual_seed(0)
    tv = G.GeneGAN().tf_variables()
    assert abs(tv['D_Ax/conv4/W'].std() - G.INIT_STDDEV) < 1e-3
    assert np.all(tv['G_joiner/b'] == 0) and np.all(tv['D_Be/fct/b'] == 0)
    assert np.all(tv['G_splitter/conv2/batch_normalization/gamma'] == 1)
    assert np.all(tv['G_joiner/deconv1/batch_normalization/moving_variance'] == 1)
    bn = G.GeneGAN().splitter.conv2.batch_normalization
    assert bn.eps == 1e-3 and abs(bn.momentum - 0.01) < 1e-12


def test_tf_variables_round_trip_is_exact():
    variables = recipe('variables')
    model = G.GeneGAN()
    model.load_tf_variables(variables)
    back = model.tf_variables()
    assert sorted(back) == sorted(variables)
    for name, value in variables.items():
        assert back[name].shape == value.shape and np.array_equal(back[name], value), name


@pytest.mark.parametrize('change, message', [
    (lambda v: v.pop('D_Be/fct/b'), 'missing TF variable D_Be/fct/b'),
    (lambda v: v.__setitem__('G_joiner/extra', np.zeros(3)), 'unknown TF variable G_joiner/extra'),
    (lambda v: v.__setitem__('G_joiner/b', np.zeros((1, 3, 1, 1))),
     'TF variable G_joiner/b has shape [1, 3, 1, 1], expected [1, 1, 1, 3]'),
])
def test_load_tf_variables_rejects_bad_input(change, message):
    variables = dict(recipe('variables'))
    change(variables)
    with pytest.raises(ValueError) as err:
        G.GeneGAN().load_tf_variables(variables)
    assert str(err.value).startswith(message) and '\n' not in str(err.value)


# ---------------------------------------------------------------------------- training graph
def test_forward_matches_tf():
    model = seeded_model()
    with G.batch_stats_only(model), torch.no_grad():
        t = G.build_model(model, nchw('input/Ax'), nchw('input/Be'))
    names = [k[len('forward/'):] for k in REF.files if k.startswith('forward/')]
    assert sorted(names) == sorted(t)
    for name in names:
        assert rel_err(nhwc(t[name]), REF['forward/' + name]) < TOL_FORWARD, name


def test_losses_match_tf():
    model = seeded_model()
    Ax, Be = nchw('input/Ax'), nchw('input/Be')
    with G.batch_stats_only(model), torch.no_grad():
        t = G.build_model(model, Ax, Be)
        loss = {**G.G_loss(model, Ax, Be, t), **G.D_loss(t)}
    assert list(loss) == list(G_LOSS_KEYS + D_LOSS_KEYS)
    names = [k[len('loss0/'):] for k in REF.files if k.startswith('loss0/')]
    assert sorted(names) == sorted(loss)
    for name in names:
        assert_loss_close(loss[name], REF['loss0/' + name], name)


def test_forward_pass_leaves_moving_statistics_alone():
    model = seeded_model()
    before = {k: v.copy() for k, v in model.tf_variables().items()}
    with G.batch_stats_only(model), torch.no_grad():
        G.build_model(model, nchw('input/Ax'), nchw('input/Be'))
    after = model.tf_variables()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_gradients_match_tf():
    model = seeded_model()
    Ax, Be = nchw('input/Ax'), nchw('input/Be')
    with G.batch_stats_only(model):
        t = G.build_model(model, Ax, Be)
        loss_G = G.G_loss(model, Ax, Be, t)['loss_G']
        loss_D = G.D_loss(t)['loss_D']
    loss_G.backward(inputs=[p for _, p in G.g_var_list(model)], retain_graph=True)
    loss_D.backward(inputs=G.d_var_list(model))
    checked = 0
    for name, param in model.tf_state().items():
        if not isinstance(param, torch.nn.Parameter):
            continue
        grad = G.to_tf_layout(param.grad).numpy()
        ref = f'grad0/{name}'
        samples = grad.ravel()[REF[ref + '/idx']]
        assert rel_err(samples, REF[ref + '/samples']) < TOL_GRAD_SAMPLES, name
        norm = np.sqrt((grad.astype(np.float64) ** 2).sum())
        assert rel_err(norm, np.sqrt(REF[ref + '/sumsq'])) < TOL_GRAD_NORM, name
        checked += 1
    assert checked == sum(1 for k in REF.files if k.startswith('grad0/') and k.endswith('/sumsq'))


def run_reference_iterations(model, trainer):
    """The recorded iterations: D step (with clip), then G step, on the recorded batches."""
    for k in range(META['iters']):
        d = trainer.d_step(nchw(f'iter{k}/d_Ax'), nchw(f'iter{k}/d_Be'))
        g = trainer.g_step(nchw(f'iter{k}/g_Ax'), nchw(f'iter{k}/g_Be'))
        yield k, d, g


def after_errors(tv):
    """{TF name: relative error} vs after/* of tv, the weights after the iterations as
    {TF name: array}."""
    errors = {}
    for name, value in tv.items():
        if 'moving_' in name:
            errors[name] = rel_err(value, REF['after/' + name])
        else:
            errors[name] = rel_err(value.ravel()[REF[f'after/{name}/idx']],
                                   REF[f'after/{name}/samples'])
    return errors


def g_moves(before, after):
    """{G variable: (its sampled values before the recorded iterations, the port's move, TF's
    move)}, from {TF name: array} before and after them."""
    moves = {}
    for name in (k for k in after if k.startswith('G_') and 'moving_' not in k):
        idx = REF[f'after/{name}/idx']
        start = before[name].ravel()[idx]
        moves[name] = start, after[name].ravel()[idx] - start, REF[f'after/{name}/samples'] - start
    return moves


def assert_training_matches_tf(model):
    before = model.tf_variables()
    trainer = G.Trainer(model, clip_after_update=True)      # as the iterations were recorded
    for k, d, g in run_reference_iterations(model, trainer):
        assert set(d) == set(D_LOSS_KEYS) and set(g) == set(G_LOSS_KEYS)
        for name, value in d.items():
            assert_loss_close(value, REF[f'iter{k}/d/{name}'], f'iter{k}/d/{name}')
        for name, value in g.items():
            assert_loss_close(value, REF[f'iter{k}/g/{name}'], f'iter{k}/g/{name}')
    tv = model.tf_variables()
    errors = after_errors(tv)
    assert len(errors) == len(META['variables'])
    for name, err in errors.items():
        assert err < (TOL_MOVING if 'moving_' in name else TOL_AFTER), (name, err)
    # G's two updates move its variables by 1e-8 to 1e-5, which TOL_AFTER on the values cannot
    # tell from no update at all. The moves match TF's as the gradients do, give or take the
    # float32 rounding of the values (2 ulps: some moves are only 20 ulps long).
    for name, (start, moved, tf_moved) in g_moves(before, tv).items():
        off = np.abs(moved - tf_moved) - 2 * np.spacing(np.abs(start))
        assert off.max() <= TOL_GRAD_SAMPLES * np.abs(tf_moved).max(), name
    assert rel_err(tv['D_Ax/fct/W'], REF['after/D_Ax/fct/W/full']) < TOL_AFTER
    ms = G.to_tf_layout(trainer.d_opt.state[model.D_Ax.fct.W]['ms']).numpy()
    assert rel_err(ms, REF['after/D_Ax/fct/W/RMSProp_ms']) < TOL_RMSPROP_MS
    assert all(np.abs(v).max() <= G.CLIP_VALUE for k, v in tv.items()
               if k.startswith('D_') and 'moving_' not in k)


def test_training_iterations_match_tf():
    assert_training_matches_tf(seeded_model())


def test_compiled_training_matches_tf():
    """`train --compile` (torch.compile of the four networks) keeps the parity."""
    model = G.prepare_for_training(seeded_model(), torch.device('cpu'), compile=True)
    assert_training_matches_tf(model)


def test_bf16_training_iterations_match_tf_within_bf16_tolerances():
    """`train --bf16`: the networks in bfloat16 (8 mantissa bits), losses and weights float32."""
    model = seeded_model()
    before = model.tf_variables()
    trainer = G.Trainer(model, clip_after_update=True, bf16=True)
    for k, d, g in run_reference_iterations(model, trainer):
        for name, value in g.items():
            ref = float(REF[f'iter{k}/g/{name}'])
            assert abs(float(value) - ref) <= 1e-7 + TOL_BF16_LOSS_G * abs(ref), (k, name)
        scale = max(abs(float(REF[f'iter{k}/d/{name}'])) for name in d)
        for name, value in d.items():
            off = abs(float(value) - REF[f'iter{k}/d/{name}'])
            assert off <= TOL_BF16_LOSS_D * scale, (k, name)
        if k == 0:                          # float32 is within 1e-5 here: bfloat16 did run
            assert abs(float(d['loss_D']) - REF['iter0/d/loss_D']) > 1e-3
    tv = model.tf_variables()
    for name, err in after_errors(tv).items():
        assert err < (TOL_BF16_MOVING if 'moving_' in name else TOL_BF16_AFTER), (name, err)
    moves = g_moves(before, tv).values()
    moved, tf_moved = (np.concatenate([move[k] for move in moves]) for k in (1, 2))
    assert np.linalg.norm(moved - tf_moved) < TOL_BF16_G_MOVE * np.linalg.norm(tf_moved)
    ms = G.to_tf_layout(trainer.d_opt.state[model.D_Ax.fct.W]['ms']).numpy()
    assert rel_err(ms, REF['after/D_Ax/fct/W/RMSProp_ms']) < TOL_BF16_MS
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_clip_first_is_the_recorded_order_shifted_by_one_clip():
    """train.py's sess.run([d_opt, loss_D, clip_d]) runs the clip before the update (the default
    here); the parity numbers were recorded with the clip after it. From the same weights, a
    clip-first D step equals a clip, then a recorded-order D step without its final clip."""
    first, recorded = seeded_model(), seeded_model()
    Ax, Be = nchw('iter0/d_Ax'), nchw('iter0/d_Be')
    loss_first = G.Trainer(first).d_step(Ax, Be)
    trainer = G.Trainer(recorded, clip_after_update=True)
    trainer.clip_d()
    trainer.clip_d = lambda: None
    loss_recorded = trainer.d_step(Ax, Be)
    assert all(torch.equal(loss_first[k], loss_recorded[k]) for k in D_LOSS_KEYS)
    a, b = first.tf_variables(), recorded.tf_variables()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    beyond = [np.abs(v).max() for k, v in a.items() if k.startswith('D_') and 'moving_' not in k]
    assert G.CLIP_VALUE < max(beyond) < G.CLIP_VALUE + G.LEARNING_RATE * 5 ** 0.5   # one update


def test_torch_rmsprop_would_not_reproduce_tf():
    """Guards against swapping torch.optim.RMSprop back in: it starts ms at 0, eps outside. The
    recorded D steps alone show it: the G steps between them move G by 1e-8 to 1e-5."""
    model = seeded_model()
    trainer = G.Trainer(model, clip_after_update=True)
    trainer.d_opt = torch.optim.RMSprop(trainer.d_params, lr=G.LEARNING_RATE, alpha=G.RMSPROP_DECAY)
    for k in range(META['iters']):
        trainer.d_step(nchw(f'iter{k}/d_Ax'), nchw(f'iter{k}/d_Be'))
    tv = model.tf_variables()
    d_errors = [err for name, err in after_errors(tv).items()
                if name.startswith('D_') and 'moving_' not in name]
    assert max(d_errors) > 10 * TOL_AFTER
    assert rel_err(tv['D_Ax/fct/W'], REF['after/D_Ax/fct/W/full']) > TOL_AFTER


# ---------------------------------------------------------------------------- demos (test.py)
def test_swap_matches_tf():
    model = seeded_model(infer=True)
    out1, out2 = G.swap(model, REF['infer/src'][0], REF['infer/att'][0])
    assert out1.shape == (64, 64, 3)
    assert rel_err(out1, REF['infer/swap_out1'][0]) < TOL_FORWARD
    assert rel_err(out2, REF['infer/swap_out2'][0]) < TOL_FORWARD
    assert model.training, 'the demo must restore the model mode'


def test_interpolation_matches_tf():
    model = seeded_model(infer=True)
    keys = [k for k in REF.files if k.startswith('infer/interpolation_n')]
    assert keys
    for key in keys:
        n = int(key.rsplit('_n', 1)[1])
        out = G.interpolation(model, REF['infer/src'][0], REF['infer/att'][0], n)
        assert out.shape == (64, 64 * (n + 1), 3)
        assert rel_err(out, REF[key]) < TOL_FORWARD, key


def test_matrix_matches_tf():
    model = seeded_model(infer=True)
    keys = [k for k in REF.files if k.startswith('infer/matrix_')]
    assert keys
    for key in keys:
        m, n = map(int, key.rsplit('_', 1)[1].split('x'))
        out = G.matrix(model, REF['infer/src'][0], list(REF['infer/atts']), (m, n))
        assert out.shape == (64 * m, 64 * (n + 2), 3)
        assert rel_err(out, REF[key]) < TOL_FORWARD, key


def test_demo_moving_statistics_are_used():
    """BN runs in inference mode in the demos: other moving statistics, other output."""
    model = seeded_model(infer=True)
    out1, _ = G.swap(model, REF['infer/src'][0], REF['infer/att'][0])
    with torch.no_grad():
        model.joiner.deconv1.batch_normalization.running_mean += 1.0
    changed, _ = G.swap(model, REF['infer/src'][0], REF['infer/att'][0])
    assert np.abs(changed - out1).max() > 1.0


# ---------------------------------------------------------------------------- resize and align
def test_train_resize_matches_dataset_py():
    out = G.train_resize(REF['resize/in256'])
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert np.array_equal(out.astype(np.float32), REF['resize/out64'])


@pytest.mark.parametrize('size, name, seed', [(64, 'tf_resize_reference.npz', 1000),
                                               (128, 'tf_resize_reference_128.npz', 3000)])
def test_train_resize_matches_dataset_py_at_any_size(size, name, seed):
    """tf.image.resize_images(image, [size, size]), recorded from TF on eight image sizes."""
    ref = np.load(os.path.join(HERE, 'testdata', name))
    for k, (h, w) in enumerate(json.loads(str(ref['meta']))['shapes']):
        img = np.random.RandomState(seed + k).randint(0, 256, (h, w, 3)).astype(np.uint8)
        out = G.train_resize(img, size)
        assert out.shape == (size, size, 3)
        assert np.array_equal(out.astype(np.float32), ref[f'resize/{k}'])
        assert out.dtype == (np.uint8 if h % size == 0 and w % size == 0 else np.float32), (h, w)


@pytest.mark.parametrize('h, w', [(256, 256), (218, 178), (100, 37), (40, 300), (63, 65)])
def test_test_resize_is_pil_bilinear(h, w):
    """test.py: misc.imresize(misc.imread(path), (64, 64)) hands the uint8 image to PIL as it is
    (bytescale leaves uint8 alone) and resizes it bilinearly: so do the demos, on any size."""
    img = np.random.RandomState(h * w).randint(0, 256, (h, w, 3)).astype(np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((64, 64), Image.BILINEAR))
    out = G.imresize(img)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and np.array_equal(out, pil)
    assert np.array_equal(G.imresize(out), out), 'a 64x64 image passes unchanged, as in PIL'
    model = seeded_model(infer=True)
    swapped = G.swap(model, img, img[::-1])
    expected = G.swap(model, pil, np.asarray(Image.fromarray(img[::-1]).resize((64, 64),
                                                                               Image.BILINEAR)))
    assert all(np.array_equal(a, b) for a, b in zip(swapped, expected))
    if (h, w) == (256, 256):
        assert not np.array_equal(out, G.train_resize(img)), 'test.py resizes unlike dataset.py'


def test_imsave_stretches_the_contrast_as_scipy_misc_imsave(tmp_path):
    """misc.imsave(path, float array) byte-scales first: the array's min to 0, its max to 255,
    linearly, rounded; the official samples and demo JPEGs are stretched so."""
    img = np.random.RandomState(0).uniform(37.3, 201.9, (6, 10, 3))
    G.imsave(str(tmp_path / 'x.png'), img)
    got = np.asarray(Image.open(tmp_path / 'x.png')).astype(np.float64)
    stretched = (img - img.min()) / (img.max() - img.min()) * 255
    assert got.min() == 0 and got.max() == 255 and np.abs(got - stretched).max() <= 0.5
    G.imsave(str(tmp_path / 'flat.png'), np.full((4, 4, 3), 90.0))      # no range: all 0
    assert not np.asarray(Image.open(tmp_path / 'flat.png')).any()


def test_align_matrices_match_preprocess_py():
    for lm, ref in zip(REF['align/landmarks'], REF['align/mat23']):
        mat = align.get_align_5p_mat23(np.array(lm).reshape(5, 2), 256)
        assert rel_err(mat, ref) < TOL_ALIGN_MAT


def test_align_image_matches_preprocess_py():
    aligned = align.align_face_5p(REF['align/image'], REF['align/landmarks'][0])
    assert aligned.shape == (256, 256, 3)
    assert np.array_equal(aligned, REF['align/aligned0'])
