"""GeneGAN (Zhou et al., BMVC 2017, arXiv:1705.04932) in PyTorch.

A port of the authors' TensorFlow code (github.com/Prinsphield/GeneGAN): model.py, dataset.py,
train.py and test.py, in that data-flow order. Each block names the official function it ports;
the tensor names (Ax, Be, A, x, B, e, Ax2, Be2, Bx, Ae) and loss keys are the official ones.
Tensors are NCHW float32 in [0, 255]; the TF code is NHWC, so layouts are transposed where the TF
variables are read or written (GeneGAN.load_tf_variables / tf_variables).

    python genegan.py toy --out datasets/toy          # a CelebA-format toy set
    python align.py --data_dir datasets/toy           # 5-point alignment (preprocess.py)
    python genegan.py train --attr Smiling --data_dir datasets/toy
    python genegan.py swap -i SRC.jpg -t TARGET.jpg
"""
import argparse
import contextlib
import glob
import hashlib
import io
import json
import math
import os
import signal
import sys
import time
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

# ----------------------------------------------------------------------------------------------
# config: every number below comes from the official code (file named) or the paper
# ----------------------------------------------------------------------------------------------
IMG_SIZE = 64                # dataset.py: nhwc = [64, 64, 64, 3]
BATCH_SIZE = 64              # dataset.py: nhwc
MAX_ITER = 100000            # dataset.py: max_iter
LEARNING_RATE = 5e-5         # dataset.py: g_lr / d_lr init_lr, decay_rate=1 (constant)
WEIGHT_DECAY = 5e-5          # dataset.py: weight_decay
SECOND_RATIO = 0.25          # dataset.py: second_ratio (share of channels that is the attribute)
INIT_STDDEV = 0.02           # model.py: tf.random_normal_initializer(stddev=0.02)
LEAKY_SLOPE = 0.2            # model.py: leakyRelu(x, 0.2)
BN_EPSILON = 1e-3            # tf.layers.batch_normalization default epsilon
BN_DECAY = 0.99              # tf.layers.batch_normalization default momentum
RMSPROP_DECAY = 0.8          # model.py: RMSPropOptimizer(lr, decay=0.8)
RMSPROP_EPSILON = 1e-10      # TF1 RMSPropOptimizer default epsilon, added inside the sqrt
RMSPROP_MS_INIT = 1.0        # TF1 RMSPropOptimizer initialises its "ms" slot to ones
CLIP_VALUE = 0.01            # model.py: clip_d, tf.clip_by_value(p, -0.01, 0.01)
PARALLELOGRAM_WEIGHT = 0.01  # model.py: G_loss['parallelogram'] = 0.01 * ...
D_BURST, D_BURST_EVERY = 100, 500   # train.py: d_num = 100 if i % 500 == 0 else 1
SAVE_EVERY = SAMPLE_EVERY = 500     # train.py: if i % 500 == 0: save and sample
LOG_EVERY = 20               # train.py: if i % 20 == 0: summary
NUM_SAMPLE_ROWS = 5          # train.py: for j in range(5)
KEEP_CHECKPOINTS = 5         # tf.train.Saver default max_to_keep
TRAIN_RESIZE_STRIDE = 4      # dataset.py's resize_images 256 -> 64 samples exactly every 4th pixel
ALIGNED_SIZE = 256           # preprocess.py: align_face_5p(..., 256)

G_LOSS_KEYS = ('e', 'cycle_Ax', 'cycle_Be', 'Bx', 'Ae', 'parallelogram',
               'loss_G_nodecay', 'loss_G_decay', 'loss_G')
D_LOSS_KEYS = ('Ax_Bx', 'Be_Ae', 'loss_D')


class UserError(Exception):
    """A problem with the user's input: reported as one line on stderr, exit code 2."""


# ----------------------------------------------------------------------------------------------
# data: dataset.py
# ----------------------------------------------------------------------------------------------
def read_attributes(data_dir, attribute):
    """dataset.py: Dataset.__init__. Rows marked 1 form set A (Ax, has the attribute), rows
    marked -1 set B (Be); row i is the image align_5p/{i+1:06d}.jpg. Returns (idxs1, idxs2, rows)."""
    path = os.path.join(data_dir, 'list_attr_celeba.txt')
    if not os.path.isfile(path):
        raise UserError(f'attribute file not found: {path}')
    with open(path, 'r') as f:
        lines = f.read().strip().split('\n')
    if len(lines) < 3:
        raise UserError(f'{path}: expected a count line, a header line and rows')
    names = lines[1].split()
    if attribute not in names:
        raise UserError(f'attribute {attribute!r} is not in {path}; valid: {" ".join(names)}')
    col_id = names.index(attribute) + 1
    attributes = []
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise UserError(f'{path}:{lineno}: expected {len(names) + 1} columns '
                            f'(file name and {len(names)} attributes), got {len(fields)}')
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            raise UserError(f'{path}:{lineno}: attribute values must be integers: {line.strip()!r}')
        attributes.append(values[col_id - 1])
    idxs1 = [i for i, a in enumerate(attributes) if a == 1]
    idxs2 = [i for i, a in enumerate(attributes) if a == -1]
    for idxs, what in ((idxs1, 'positive (1)'), (idxs2, 'negative (-1)')):
        if not idxs:
            raise UserError(f'attribute {attribute!r} has no {what} rows in {path}')
    return idxs1, idxs2, len(attributes)


def aligned_path(data_dir, idx):
    return os.path.join(data_dir, 'align_5p', '{:06d}.jpg'.format(idx + 1))


def train_resize(img):
    """dataset.py: tf.image.resize_images(image, [64, 64]) of a 256x256 aligned face. TF's
    legacy bilinear (no half-pixel centres) samples source pixel 4*i exactly: a stride-4 slice."""
    return np.ascontiguousarray(img[::TRAIN_RESIZE_STRIDE, ::TRAIN_RESIZE_STRIDE])


def load_train_image(path):
    """dataset.py: read_images (decode_jpeg, channels=3, then the resize). Raises ValueError."""
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert('RGB'))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f'not a readable image ({type(err).__name__})')
    if img.shape[:2] != (ALIGNED_SIZE, ALIGNED_SIZE):
        raise ValueError(f'is {img.shape[1]}x{img.shape[0]}, not {ALIGNED_SIZE}x{ALIGNED_SIZE} '
                         f'(align.py writes {ALIGNED_SIZE}x{ALIGNED_SIZE})')
    return train_resize(img)


def _load_for_cache(path):
    try:
        return load_train_image(path), None
    except ValueError as err:
        return None, str(err)


def load_cache(data_dir, num_rows, num_workers=0, skip_bad=False):
    """All aligned faces of list_attr_celeba.txt, resized for training, as one (rows, 64, 64, 3)
    uint8 array: DATA_DIR/align_5p_64x64.npy, built once and memory-mapped after. It is rebuilt
    when any source file's size or mtime changes. Returns (images, bad row indices)."""
    cache = os.path.join(data_dir, 'align_5p_64x64.npy')
    index = cache[:-len('.npy')] + '.json'
    bad_list = cache[:-len('.npy')] + '_bad.txt'
    if not os.path.isdir(os.path.join(data_dir, 'align_5p')):
        raise UserError(f'aligned faces not found: {os.path.join(data_dir, "align_5p")} '
                        f'(run: python align.py --data_dir {data_dir})')
    paths = [aligned_path(data_dir, i) for i in range(num_rows)]
    fingerprint = []
    for path in paths:
        try:
            st = os.stat(path)
            fingerprint.append(f'{st.st_size}:{st.st_mtime_ns}')
        except OSError:
            fingerprint.append('missing')
    fingerprint = hashlib.sha256('\n'.join(fingerprint).encode()).hexdigest()
    meta = None
    if os.path.exists(cache) and os.path.exists(index):
        with open(index) as f:
            meta = json.load(f)
    if meta is None or meta.get('fingerprint') != fingerprint or meta.get('rows') != num_rows:
        meta = _build_cache(paths, cache, index, fingerprint, num_workers)
    bad = meta['bad']
    if bad:
        with open(bad_list, 'w') as f:
            f.write(''.join(f'{paths[i]}: {why}\n' for i, why in bad))
        if not skip_bad:
            shown = '; '.join(f'{paths[i]} {why}' for i, why in bad[:3])
            raise UserError(f'{len(bad)} aligned image(s) missing or unreadable (all listed in '
                            f'{bad_list}): {shown}{"; ..." if len(bad) > 3 else ""}. '
                            f'Re-run align.py, or pass --skip_bad to train without them')
    return np.load(cache, mmap_mode='r'), {i for i, _ in bad}


def _build_cache(paths, cache, index, fingerprint, num_workers):
    tmp = cache + '.tmp.npy'
    images = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.uint8,
                                       shape=(len(paths), IMG_SIZE, IMG_SIZE, 3))
    bad = []
    pool = Pool(num_workers) if num_workers > 0 else None
    results = pool.imap(_load_for_cache, paths, chunksize=64) if pool else map(_load_for_cache, paths)
    for i, (img, why) in enumerate(tqdm(results, total=len(paths), desc='cache 64x64', unit='img')):
        if why is None:
            images[i] = img
        else:
            bad.append((i, why))
    if pool:
        pool.close()
    images.flush()
    del images
    os.replace(tmp, cache)
    meta = dict(fingerprint=fingerprint, rows=len(paths), bad=bad)
    with open(index + '.tmp', 'w') as f:
        json.dump(meta, f)
    os.replace(index + '.tmp', index)
    return meta


class Sampler:
    """dataset.py: string_input_producer (reshuffled every epoch) feeding shuffle_batch, as
    per-epoch permutations of one set's row indices: each draw is the next batch_size rows.
    Its state (generator, permutation, position) goes into checkpoints."""

    def __init__(self, images, idxs, batch_size, seed):
        self.images = images
        self.idxs = torch.as_tensor(idxs, dtype=torch.int64)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(self.idxs), generator=self.generator)
        self.pos = 0

    def draw(self):
        rows = []
        while len(rows) < self.batch_size:
            if self.pos == len(self.perm):
                self.perm = torch.randperm(len(self.idxs), generator=self.generator)
                self.pos = 0
            take = min(self.batch_size - len(rows), len(self.perm) - self.pos)
            rows.extend(self.idxs[self.perm[self.pos:self.pos + take]].tolist())
            self.pos += take
        return self.images[rows]

    def state_dict(self):
        return dict(generator=self.generator.get_state(), perm=self.perm, pos=self.pos)

    def load_state_dict(self, state):
        self.generator.set_state(state['generator'])
        self.perm, self.pos = state['perm'], state['pos']


# ----------------------------------------------------------------------------------------------
# model: model.py
# ----------------------------------------------------------------------------------------------
class BatchNorm(nn.BatchNorm2d):
    """tf.layers.batch_normalization: epsilon 1e-3, moving-average decay 0.99.

    In TF the moving statistics are updated by UPDATE_OPS, which run only as control dependencies
    of an optimizer step. Sample images and logged losses use batch statistics without touching
    them; `update_stats = False` (see batch_stats_only) gives that in training mode.
    """

    def __init__(self, num_features):
        super().__init__(num_features, eps=BN_EPSILON, momentum=1 - BN_DECAY)
        self.update_stats = True

    def forward(self, X):
        if self.training and not self.update_stats:
            return F.batch_norm(X, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return super().forward(X)


@contextlib.contextmanager
def batch_stats_only(model):
    """Training-mode forward (batch statistics) that leaves the moving statistics untouched."""
    bns = [m for m in model.modules() if isinstance(m, BatchNorm)]
    for bn in bns:
        bn.update_stats = False
    try:
        yield
    finally:
        for bn in bns:
            bn.update_stats = True


class Conv(nn.Module):
    """model.py: make_conv / make_conv_bn / make_deconv / make_deconv_bn.

    4x4 kernels, stride 2, 'SAME' padding (= 1 on each side here), no bias. The attribute names
    W and batch_normalization mirror the TF variable scopes so the weight mapping is by name.
    """

    def __init__(self, in_ch, out_ch, bn, transpose=False):
        super().__init__()
        self.transpose = transpose
        shape = (in_ch, out_ch, 4, 4) if transpose else (out_ch, in_ch, 4, 4)
        self.W = nn.Parameter(torch.randn(shape) * INIT_STDDEV)
        self.batch_normalization = BatchNorm(out_ch) if bn else None

    def forward(self, X):
        conv = F.conv_transpose2d if self.transpose else F.conv2d
        X = conv(X, self.W, stride=2, padding=1)
        return X if self.batch_normalization is None else self.batch_normalization(X)


class FC(nn.Module):
    """model.py: make_fc. W is kept in TF layout [in, out]: X @ W + b."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.W = nn.Parameter(torch.randn(in_dim, out_dim) * INIT_STDDEV)
        self.b = nn.Parameter(torch.zeros(out_dim))

    def forward(self, X):
        return torch.addmm(self.b, X, self.W)


def leaky_relu(X):
    return F.leaky_relu(X, LEAKY_SLOPE)


class Discriminator(nn.Module):
    """model.py: discriminator (a WGAN critic: no sigmoid)."""

    def __init__(self):
        super().__init__()
        self.conv1 = Conv(3, 128, bn=False)
        self.conv2 = Conv(128, 256, bn=True)
        self.conv3 = Conv(256, 512, bn=True)
        self.conv4 = Conv(512, 512, bn=True)
        self.fct = FC(4 * 4 * 512, 1)

    def forward(self, image):
        X = image / 255.0
        X = leaky_relu(self.conv1(X))
        X = leaky_relu(self.conv2(X))
        X = leaky_relu(self.conv3(X))
        X = leaky_relu(self.conv4(X))
        # TF flattens NHWC (h, w, c order); the fc weight is stored for that order.
        X = X.permute(0, 2, 3, 1).flatten(1)
        return self.fct(X)


class Splitter(nn.Module):
    """model.py: splitter. Returns (A, x): background channels, then the last
    int(512 * second_ratio) channels, the attribute."""

    def __init__(self, second_ratio=SECOND_RATIO):
        super().__init__()
        self.num_ch = int(512 * second_ratio)
        self.conv1 = Conv(3, 128, bn=False)
        self.conv2 = Conv(128, 256, bn=True)
        self.conv3 = Conv(256, 512, bn=True)

    def forward(self, image):
        X = image / 255.0
        X = leaky_relu(self.conv1(X))
        X = leaky_relu(self.conv2(X))
        X = leaky_relu(self.conv3(X))
        return X[:, :-self.num_ch], X[:, -self.num_ch:]


class Joiner(nn.Module):
    """model.py: joiner. Output (tanh + 1) * 255 / 2, in [0, 255]."""

    def __init__(self):
        super().__init__()
        self.deconv1 = Conv(512, 512, bn=True, transpose=True)
        self.deconv2 = Conv(512, 256, bn=True, transpose=True)
        self.deconv3 = Conv(256, 3, bn=False, transpose=True)
        self.b = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, A, x):
        X = torch.cat([A, x], dim=1)
        X = F.relu(self.deconv1(X))
        X = F.relu(self.deconv2(X))
        X = self.deconv3(X) + self.b
        return (torch.tanh(X) + 1) * 255.0 / 2


# PyTorch state-dict names <-> official TF variable names, e.g.
# splitter.conv2.batch_normalization.running_mean <-> G_splitter/conv2/batch_normalization/moving_mean
TF_SCOPES = {'splitter': 'G_splitter', 'joiner': 'G_joiner', 'D_Ax': 'D_Ax', 'D_Be': 'D_Be'}
TF_BN_NAMES = {'weight': 'gamma', 'bias': 'beta', 'running_mean': 'moving_mean',
               'running_var': 'moving_variance'}


def tf_name(torch_name):
    scope, *rest = torch_name.split('.')
    if rest[-2:-1] == ['batch_normalization']:
        rest[-1] = TF_BN_NAMES[rest[-1]]
    return '/'.join([TF_SCOPES[scope]] + rest)


def to_tf_layout(tensor):
    """Conv kernels: torch [out, in, kh, kw] (conv) or [in, out, kh, kw] (transposed conv) ->
    TF [kh, kw, in, out] (conv) or [kh, kw, out, in] (conv2d_transpose): one permutation serves
    both. The joiner bias [1, 3, 1, 1] -> [1, 1, 1, 3]. Everything else is stored as in TF."""
    if tensor.dim() == 4:
        return tensor.permute(2, 3, 1, 0) if tensor.shape[-1] == 4 else tensor.permute(0, 2, 3, 1)
    return tensor


def from_tf_layout(array, like):
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if like.dim() == 4:
        return tensor.permute(3, 2, 0, 1) if like.shape[-1] == 4 else tensor.permute(0, 3, 1, 2)
    return tensor


class GeneGAN(nn.Module):
    """The four networks of model.py: G_splitter, G_joiner and the critics D_Ax, D_Be."""

    def __init__(self, second_ratio=SECOND_RATIO):
        super().__init__()
        self.second_ratio = second_ratio
        self.splitter = Splitter(second_ratio)
        self.joiner = Joiner()
        self.D_Ax = Discriminator()
        self.D_Be = Discriminator()

    def tf_state(self):
        """{TF name: tensor} over the state dict (BN step counters have no TF twin)."""
        return {tf_name(k): v for k, v in self.state_dict(keep_vars=True).items()
                if not k.endswith('num_batches_tracked')}

    def tf_variables(self):
        """All model variables as {official TF name: numpy array in TF layout}."""
        return {k: to_tf_layout(v.detach()).cpu().numpy().copy() for k, v in self.tf_state().items()}

    @torch.no_grad()
    def load_tf_variables(self, variables):
        """Load every variable of the official graph from {TF name: array in TF layout}."""
        ours = self.tf_state()
        missing = sorted(set(ours) - set(variables))
        unknown = sorted(set(variables) - set(ours))
        if missing:
            raise ValueError(f'missing TF variable {missing[0]} ({len(missing)} missing in all)')
        if unknown:
            raise ValueError(f'unknown TF variable {unknown[0]} ({len(unknown)} unknown in all)')
        for name, tensor in ours.items():
            expected = tuple(to_tf_layout(tensor).shape)
            got = tuple(np.shape(variables[name]))
            if got != expected:
                raise ValueError(f'TF variable {name} has shape {list(got)}, expected {list(expected)}')
        for name, tensor in ours.items():
            tensor.copy_(from_tf_layout(variables[name], tensor))


# ----------------------------------------------------------------------------------------------
# losses and optimizer: model.py build_model
# ----------------------------------------------------------------------------------------------
def build_model(model, Ax, Be):
    """model.py: build_model. The six images and four critic outputs of one step."""
    A, x = model.splitter(Ax)
    B, e = model.splitter(Be)

    Ax2 = model.joiner(A, x)
    Be2 = model.joiner(B, torch.zeros_like(e))

    # crossover
    Bx = model.joiner(B, x)
    Ae = model.joiner(A, torch.zeros_like(e))

    real_Ax = model.D_Ax(Ax)
    fake_Bx = model.D_Ax(Bx)

    real_Be = model.D_Be(Be)
    fake_Ae = model.D_Be(Ae)
    return dict(A=A, x=x, B=B, e=e, Ax2=Ax2, Be2=Be2, Bx=Bx, Ae=Ae,
                real_Ax=real_Ax, fake_Bx=fake_Bx, real_Be=real_Be, fake_Ae=fake_Ae)


def g_var_list(model):
    """model.py: g_var_list, joiner then splitter, as (TF-style name, parameter) pairs."""
    return [(f'G_joiner/{n}', p) for n, p in model.joiner.named_parameters()] + \
           [(f'G_splitter/{n}', p) for n, p in model.splitter.named_parameters()]


def d_var_list(model):
    """model.py: d_var_list: every trainable variable of both critics, BN and fc bias included."""
    return list(model.D_Ax.parameters()) + list(model.D_Be.parameters())


def G_loss(model, Ax, Be, t, weight_decay=WEIGHT_DECAY):
    """model.py: G_loss, loss_G_nodecay, loss_G_decay, loss_G."""
    loss = {}
    loss['e'] = t['e'].abs().mean()
    loss['cycle_Ax'] = (Ax - t['Ax2']).abs().mean() / 255.0
    loss['cycle_Be'] = (Be - t['Be2']).abs().mean() / 255.0
    loss['Bx'] = -t['fake_Bx'].mean()
    loss['Ae'] = -t['fake_Ae'].mean()
    loss['parallelogram'] = PARALLELOGRAM_WEIGHT * (Ax + Be - t['Bx'] - t['Ae']).abs().mean()
    loss['loss_G_nodecay'] = sum(loss.values())
    # Decay covers the G conv/deconv kernels only (names ending 'W'), not the joiner bias b.
    loss['loss_G_decay'] = sum(0.5 * weight_decay * w.square().mean()
                               for name, w in g_var_list(model) if name.endswith('W'))
    loss['loss_G'] = loss['loss_G_decay'] + loss['loss_G_nodecay']
    return loss


def D_loss(t):
    """model.py: D_loss, loss_D."""
    loss = {}
    loss['Ax_Bx'] = (t['fake_Bx'] - t['real_Ax']).mean()
    loss['Be_Ae'] = (t['fake_Ae'] - t['real_Be']).mean()
    loss['loss_D'] = loss['Ax_Bx'] + loss['Be_Ae']
    return loss


class TFRMSProp(torch.optim.Optimizer):
    """tf.train.RMSPropOptimizer(lr, decay=0.8) as TF1 computes it, momentum 0:

        ms <- ms + (g*g - ms) * (1 - decay)      # ms starts at 1, not 0
        w  <- w - lr * g / sqrt(ms + 1e-10)      # epsilon inside the root

    torch.optim.RMSprop starts ms at 0 and adds eps outside the root; its first steps are
    sign-like (about 2.2 * lr per element) and it does not reproduce the official weights.
    """

    def __init__(self, params, lr=LEARNING_RATE, decay=RMSPROP_DECAY, epsilon=RMSPROP_EPSILON):
        super().__init__(params, dict(lr=lr, decay=decay, epsilon=epsilon))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group['params'] if p.grad is not None]
            grads = [p.grad for p in params]
            for p in params:
                if 'ms' not in self.state[p]:
                    self.state[p]['ms'] = torch.full_like(p, RMSPROP_MS_INIT)
            ms = [self.state[p]['ms'] for p in params]
            delta = torch._foreach_mul(grads, grads)
            torch._foreach_sub_(delta, ms)
            torch._foreach_add_(ms, delta, alpha=1 - group['decay'])
            denom = torch._foreach_add(ms, group['epsilon'])
            torch._foreach_sqrt_(denom)
            torch._foreach_addcdiv_(params, grads, denom, value=-group['lr'])


class Trainer:
    """The two update ops of model.py (d_opt + clip_d, g_opt) as train.py runs them.

    Each step takes float32 NCHW batches in [0, 255] and returns its loss values (0-dim
    tensors, no host sync) computed on the weights before the update. As in TF, every step
    runs the whole graph in training mode, so every BatchNorm layer's moving statistics take
    one update per application (UPDATE_OPS are control dependencies of both optimizers).
    """

    def __init__(self, model, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY):
        self.model = model
        self.weight_decay = weight_decay
        self.g_params = [p for _, p in g_var_list(model)]
        self.d_params = d_var_list(model)
        self.g_opt = TFRMSProp(self.g_params, lr)
        self.d_opt = TFRMSProp(self.d_params, lr)

    def d_step(self, Ax, Be):
        model = self.model
        # No gradient flows into G here (d_opt's var_list is D only), so G runs without autograd.
        with torch.no_grad():
            A, x = model.splitter(Ax)
            B, e = model.splitter(Be)
            model.joiner(A, x)                        # Ax2, Be2: computed for their BN updates
            model.joiner(B, torch.zeros_like(e))
            Bx = model.joiner(B, x)
            Ae = model.joiner(A, torch.zeros_like(e))
        t = dict(real_Ax=model.D_Ax(Ax), fake_Bx=model.D_Ax(Bx),
                 real_Be=model.D_Be(Be), fake_Ae=model.D_Be(Ae))
        loss = D_loss(t)
        self.d_opt.zero_grad(set_to_none=True)
        loss['loss_D'].backward(inputs=self.d_params)
        self.d_opt.step()
        self.clip_d()
        return {k: v.detach() for k, v in loss.items()}

    @torch.no_grad()
    def clip_d(self):
        """model.py: clip_d."""
        torch._foreach_clamp_min_(self.d_params, -CLIP_VALUE)
        torch._foreach_clamp_max_(self.d_params, CLIP_VALUE)

    def g_step(self, Ax, Be):
        model = self.model
        t = build_model(model, Ax, Be)
        loss = G_loss(model, Ax, Be, t, self.weight_decay)
        self.g_opt.zero_grad(set_to_none=True)
        # inputs= keeps autograd from computing critic weight gradients nobody uses.
        loss['loss_G'].backward(inputs=self.g_params)
        self.g_opt.step()
        return {k: v.detach() for k, v in loss.items()}


# ----------------------------------------------------------------------------------------------
# demos: test.py (swap_attribute, interpolation, interpolation_matrix)
# ----------------------------------------------------------------------------------------------
def imresize(img, size=IMG_SIZE):
    """test.py: scipy.misc.imresize(img, (64, 64)), which is PIL's bilinear resize of uint8.

    (Training resizes differently: see train_resize.) PIL returns an exact copy when the size
    already matches, so a 64x64 input passes through unchanged, as it does in test.py.
    """
    img = np.asarray(img)
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img.astype(np.uint8)).resize((size, size), Image.BILINEAR))


def imsave(path, img):
    """test.py / train.py: scipy.misc.imsave of a float array, which byte-scales it first:
    (img - min) / (max - min) * 255, rounded. The official JPEGs are contrast-stretched so."""
    img = np.asarray(img, dtype=np.float64)
    lo, hi = img.min(), img.max()
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    img = ((img - lo) * scale).clip(0, 255) + 0.5
    Image.fromarray(img.astype(np.uint8)).save(path)


@contextlib.contextmanager
def inference(model):
    """BN in inference mode (moving statistics), no autograd; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _device(model):
    return next(model.parameters()).device


def _batch(model, imgs):
    """HxWx3 images in [0, 255] -> a float32 NCHW batch on the model's device."""
    arr = np.stack([imresize(img) for img in imgs]).astype(np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(_device(model))


def _image(t):
    return t[0].permute(1, 2, 0).float().cpu().numpy()


def swap(model, src, att):
    """test.py: swap_attribute. out1 = Bx (src gains att's attribute), out2 = Ae (att loses it)."""
    with inference(model):
        # test.py feeds Ax = att_img, Be = src_img
        A, x = model.splitter(_batch(model, [att]))
        B, e = model.splitter(_batch(model, [src]))
        out1 = model.joiner(B, x)
        out2 = model.joiner(A, torch.zeros_like(e))
        return _image(out1), _image(out2)


def interpolation(model, src, att, n):
    """test.py: interpolation. The row [src, joiner(B, x * 1/n), ..., joiner(B, x * n/n)]."""
    with inference(model):
        A, x = model.splitter(_batch(model, [att]))
        B, e = model.splitter(_batch(model, [src]))
        out = [imresize(src).astype(np.float32)]
        for i in range(1, n + 1):
            lambda_i = i / float(n)
            out.append(_image(model.joiner(B, x * lambda_i)))
        return np.concatenate(out, axis=1)


def matrix(model, src, atts, size):
    """test.py: interpolation_matrix. An m x n grid blending four attribute codes bilinearly,
    framed by the attribute images (att0/att2 left, att1/att3 right) and white fill."""
    m, n = size
    h, w = IMG_SIZE, IMG_SIZE
    rows = [[1 - i / float(m - 1), i / float(m - 1)] for i in range(m)]
    cols = [[1 - i / float(n - 1), i / float(n - 1)] for i in range(n)]
    four_tuple = []
    for row in rows:
        for col in cols:
            four_tuple.append([row[0] * col[0], row[0] * col[1], row[1] * col[0], row[1] * col[1]])
    with inference(model):
        attributes = [model.splitter(_batch(model, [att]))[1] for att in atts]
        B = model.splitter(_batch(model, [src]))[0]
        out = []
        for i in range(m):
            out_row = []
            for j in range(n):
                four = four_tuple[i * n + j]
                attribute = sum([four[k] * attributes[k] for k in range(4)])
                out_row.append(_image(model.joiner(B, attribute)))
            out.append(np.concatenate(out_row, axis=1))
    out = np.concatenate(out, axis=0)
    atts = [imresize(att).astype(np.float32) for att in atts]
    white = np.full(((m - 2) * h, w, 3), 255, np.float32)
    first_col = np.concatenate((atts[0], white, atts[2]), axis=0)
    last_col = np.concatenate((atts[1], white, atts[3]), axis=0)
    return np.concatenate((first_col, out, last_col), axis=1)
