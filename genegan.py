"""GeneGAN (Zhou et al., BMVC 2017, arXiv:1705.04932) in PyTorch.

A port of the authors' TensorFlow code (github.com/Prinsphield/GeneGAN): dataset.py, model.py,
train.py and test.py, in that data-flow order. Each block names the official function it ports;
the tensor names (Ax, Be, A, x, B, e, Ax2, Be2, Bx, Ae) and loss keys are the official ones.
Tensors are NCHW float32 in [0, 255]; the TF code is NHWC, so layouts are transposed where the TF
variables are read or written (GeneGAN.load_tf_variables / tf_variables).
Usage: README.md, or python genegan.py --help.
"""
import argparse
import contextlib
import difflib
import glob
import hashlib
import importlib
import json
import os
import pickle
import platform
import re
import signal
import sys
import warnings
from multiprocessing import Pool
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from align import (ALIGNED_SIZE, Parser, UserError, image_names, own_temp, read_image, read_table,
                   refuse)

# ---- config: every number below comes from the official code (file named) or the paper -----------
IMG_SIZE = 64                # dataset.py: nhwc = [64, 64, 64, 3]
IMG_SIZES = (64, 128)        # 128: zsc/genegan_torch@0fab379, one more stride-2 layer a net
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
NUM_SUMMARY_IMAGES = 30      # train.py: tf.summary.image(..., max_outputs=30)
IMAGE_KEYS = ('Ax', 'Be', 'Ax2', 'Be2', 'Bx', 'Ae')   # train.py: tf.summary.image tags
KEEP_CHECKPOINTS = 5         # tf.train.Saver default max_to_keep
PARTITIONS = {'train': 0, 'val': 1, 'test': 2}   # CelebA's list_eval_partition.txt
CHECKPOINT_FORMAT = 'genegan-pytorch/1'
CHECKPOINT_KEYS = ('iter', 'config', 'model', 'g_opt', 'd_opt', 'sampler_A', 'sampler_B',
                   'torch_rng')

# ---- data: dataset.py ----------------------------------------------------------------------------
class DataSet(NamedTuple):
    """A list of image files, each in set A (Ax, with the attribute: idxs1) or set B (Be, without:
    idxs2), and each row's partition (PARTITIONS) where the data set has one. CelebA's tables and
    two folders are two ways of building it; the cache, sampler, partition and eval see only it."""
    kind: str              # 'CelebA' or 'two folders'
    attribute: str         # the column of list_attr_celeba; for two folders only a name
    paths: list
    idxs1: list
    idxs2: list
    partition: list        # one of PARTITIONS' values per row, or None
    cache: str             # the cache files' stem: STEM_64x64.npy, STEM_128x128.npy
    size: int              # the size every image must have (align.py's output), or None

    def rows(self, *partitions):
        wanted = {PARTITIONS[name] for name in partitions}     # 'train', 'val', 'test'
        return {i for i, p in enumerate(self.partition) if p in wanted}

    def identity(self):
        """What a checkpoint records, so that --resume and eval refuse another data set."""
        return (f'{self.kind}, attribute {self.attribute}, '
                f'{len(self.idxs1)} A and {len(self.idxs2)} B images')

def load_dataset(data_dir, attribute=None, need_partition=False):
    """Two folders where DATA_DIR holds trainA/ or trainB/, else CelebA's files."""
    refuse(not os.path.isdir(data_dir),
           f'data directory not found: {data_dir}; pass --data_dir (CelebA or two '
           f'folders), or draw a toy set: python genegan.py toy --out datasets/toy')
    if any(os.path.isdir(os.path.join(data_dir, 'train' + s)) for s in 'AB'):
        return folder_dataset(data_dir, attribute or 'trainA', need_partition)
    return celeba_dataset(data_dir, attribute or 'Smiling', need_partition)

def celeba_dataset(data_dir, attribute, need_partition):
    """dataset.py: Dataset.filenames1/2: row i of list_attr_celeba is align_5p/{i+1:06d}.jpg."""
    idxs1, idxs2, rows = read_attributes(data_dir, attribute)
    found = any(os.path.isfile(os.path.join(data_dir, 'list_eval_partition' + ext))
                for ext in ('.txt', '.csv'))
    partition = read_partition(data_dir, rows) if need_partition or found else None
    refuse(not os.path.isdir(os.path.join(data_dir, 'align_5p')),
           f'aligned faces not found: {os.path.join(data_dir, "align_5p")} '
           f'(run: python align.py --data_dir {data_dir})')
    return DataSet('CelebA', attribute, [aligned_path(data_dir, i) for i in range(rows)],
                   idxs1, idxs2, partition, os.path.join(data_dir, 'align_5p'),
                   ALIGNED_SIZE)

def read_attributes(data_dir, attribute):
    """dataset.py: Dataset.__init__. Rows marked 1 are set A (Ax), rows marked -1 set B (Be)."""
    path, names, rows, _ = read_table(data_dir, 'list_attr_celeba')
    near = [n for n in names or [] if n.lower() == attribute.lower()] or \
        difflib.get_close_matches(attribute, names or [], 3, 0.7)
    hint = (f'did you mean {" or ".join(near)}? (case matters)' if near
            else f'valid: {" ".join(names or [])}')
    refuse(attribute not in (names or []), f'attribute {attribute!r} is not in {path}; {hint}')
    attributes = [row[names.index(attribute)] for row in rows]
    idxs1 = [i for i, a in enumerate(attributes) if a == 1]
    idxs2 = [i for i, a in enumerate(attributes) if a == -1]
    for idxs, what in ((idxs1, 'positive (1)'), (idxs2, 'negative (-1)')):
        refuse(not idxs, f'attribute {attribute!r} has no {what} rows in {path}')
    return idxs1, idxs2, len(attributes)

def read_partition(data_dir, num_rows):
    """CelebA's list_eval_partition.txt (or .csv): 0 train, 1 val, 2 test, one row per image."""
    path, _, rows, _ = read_table(data_dir, 'list_eval_partition')
    for i, row in enumerate(rows):
        if row not in ([0], [1], [2]):
            raise UserError(f'{path}:{i + 1 + path.endswith(".csv")}: expected "name 0|1|2"')
    refuse(len(rows) != num_rows, f'{path} has {len(rows)} rows, list_attr_celeba has {num_rows}')
    return [row[0] for row in rows]

def aligned_path(data_dir, idx):
    return os.path.join(data_dir, 'align_5p', '{:06d}.jpg'.format(idx + 1))

def folder_dataset(data_dir, attribute, need_partition):
    """DATA_DIR/trainA (set A) and trainB (set B), and optionally testA and testB, the test
    partition (CycleGAN's folder names): every file PIL knows by its extension, of any size."""
    tests = [os.path.isdir(os.path.join(data_dir, 'test' + s)) for s in 'AB']
    refuse(tests[0] != tests[1] or (need_partition and not all(tests)),
           f'{data_dir} needs both testA/ and testB/ (the held-out test partition)'
           f'{" for --partition train" if need_partition else ", or neither"}')
    paths, idxs, partition = [], {'A': [], 'B': []}, []
    for part in ('train', 'test') if all(tests) else ('train',):
        for s in 'AB':
            folder = os.path.join(data_dir, part + s)
            names = image_names(folder)
            refuse(not names, f'no images in {folder} (any image PIL reads: .jpg, .png, ...)')
            idxs[s] += range(len(paths), len(paths) + len(names))
            paths += [os.path.join(folder, n) for n in names]
            partition += [PARTITIONS[part]] * len(names)
    return DataSet('two folders', attribute, paths, idxs['A'], idxs['B'],
                   partition if all(tests) else None,
                   os.path.join(data_dir, 'images'), None)

def train_resize(img, size=IMG_SIZE):
    """dataset.py: tf.image.resize_images(image, [64, 64]) of an HxWx3 uint8 image (or to 128):
    TF's legacy bilinear (no half-pixel centres), in float32 as TF computes it. Where H and W are
    multiples of the size (256x256 aligned faces) it samples every (H/size)-th pixel exactly: a
    uint8 slice then."""
    h, w = img.shape[:2]
    if h % size == 0 and w % size == 0:
        return np.ascontiguousarray(img[::h // size, ::w // size])
    (y0, y1, dy), (x0, x1, dx) = resize_weights(h, size), resize_weights(w, size)
    img = img.astype(np.float32)
    top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * dx[:, None]
    bottom = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * dx[:, None]
    return top + (bottom - top) * dy[:, None, None]

def resize_weights(n, size):
    """TF's compute_interpolation_weights, LegacyScaler: source i * (n / size) in float32."""
    x = np.arange(size, dtype=np.float32) * np.float32(n / size)
    lo = np.floor(x)
    return lo.astype(np.int64), np.minimum(np.ceil(x), n - 1).astype(np.int64), x - lo

def to_device(batch, device):
    """uint8 NHWC -> float32 NCHW on the device, channels_last in memory (the permute is free);
    uint8 crosses to the device (4x less traffic), asynchronously only when pinned (CUDA)."""
    batch = torch.from_numpy(np.ascontiguousarray(batch))
    if device.type == 'cuda':
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=device.type == 'cuda').permute(0, 3, 1, 2).float()

class Sampler:
    """dataset.py: string_input_producer (reshuffled every epoch) feeding shuffle_batch."""
    def __init__(self, images, idxs, batch_size, seed, device=torch.device('cpu')):
        self.images, self.batch_size, self.device = images, batch_size, device
        self.idxs = torch.as_tensor(idxs, dtype=torch.int64)
        self.generator = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.zeros(0, dtype=torch.int64), 0    # the first draw shuffles

    def draw(self):
        rows = []
        while len(rows) < self.batch_size:
            if self.pos == len(self.perm):      # a new epoch
                self.perm, self.pos = torch.randperm(len(self.idxs), generator=self.generator), 0
            take = min(self.batch_size - len(rows), len(self.perm) - self.pos)
            rows.extend(self.idxs[self.perm[self.pos:self.pos + take]].tolist())
            self.pos += take
        return to_device(self.images[rows], self.device)

    def state_dict(self):
        return dict(generator=self.generator.get_state(), perm=self.perm, pos=self.pos)

    def load_state_dict(self, state):
        # load_checkpoint maps tensors to the training device; the sampler lives on the CPU.
        self.generator.set_state(state['generator'].cpu())
        self.perm, self.pos = state['perm'].cpu(), state['pos']

# ---- model: model.py -----------------------------------------------------------------------------
class Conv(nn.Module):
    """model.py: make_conv / make_conv_bn / make_deconv / make_deconv_bn: 4x4 kernels, stride 2,
    'SAME' padding (1 on each side here), no bias, then tf.layers.batch_normalization's defaults.
    The attribute names W and batch_normalization mirror the TF scopes: weights map by name.
    W is drawn by initialize()."""
    def __init__(self, in_ch, out_ch, bn, transpose=False):
        super().__init__()
        self.transpose = transpose
        shape = (in_ch, out_ch, 4, 4) if transpose else (out_ch, in_ch, 4, 4)
        self.W = nn.Parameter(torch.zeros(shape))
        self.batch_normalization = (nn.BatchNorm2d(out_ch, eps=BN_EPSILON, momentum=1 - BN_DECAY)
                                    if bn else None)

    def forward(self, X):
        conv = F.conv_transpose2d if self.transpose else F.conv2d
        X = conv(X, self.W, stride=2, padding=1)
        return X if self.batch_normalization is None else self.batch_normalization(X)

@contextlib.contextmanager
def batch_stats_only(model):
    """A training-mode forward (batch statistics) that leaves the moving statistics alone: TF moves
    them only through UPDATE_OPS, run with an optimizer step, not for samples or logged losses."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.track_running_stats = False      # in training mode: batch statistics, no update
    try:
        yield
    finally:
        for bn in bns:
            bn.track_running_stats = True

class FC(nn.Module):
    """model.py: make_fc. W is kept in TF layout [in, out]: X @ W + b; drawn by initialize()."""
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(in_dim, out_dim))
        self.b = nn.Parameter(torch.zeros(out_dim))

    def forward(self, X):
        with torch.autocast(X.device.type, enabled=False):     # --bf16: the critic's output
            return torch.addmm(self.b, X.float(), self.W)     # of order 1e-2 stays float32

def leaky_relu(X):
    return F.leaky_relu_(X, LEAKY_SLOPE)

@torch.no_grad()
def initialize(net):
    """model.py's tf.random_normal_initializer(stddev=0.02) of every W, drawn in the order the
    layers are built, as train.py's tf.global_variables_initializer runs them (biases and BN start
    as built). A model restored from a checkpoint skips it: 0.12 s of draws at 64x64."""
    for name, w in net.named_parameters():
        if name.endswith('W'):
            w.copy_(torch.randn(w.shape) * INIT_STDDEV)
    return net

# At 128x128 (not the official size) each network gains one stride-2 layer, named and initialised
# as its neighbours (zsc/genegan_torch@0fab379, genegan/models/genegan.py): the splitter's conv4,
# the critics' conv5, and the joiner's deconv3 256->128 BN ReLU before a deconv4 128->3.
class Discriminator(nn.Module):
    """model.py: discriminator (a WGAN critic: no sigmoid)."""
    def __init__(self, img_size=IMG_SIZE):
        super().__init__()
        self.conv1 = Conv(3, 128, bn=False)
        self.conv2 = Conv(128, 256, bn=True)
        self.conv3 = Conv(256, 512, bn=True)
        self.conv4 = Conv(512, 512, bn=True)
        self.conv5 = Conv(512, 512, bn=True) if img_size == 128 else None
        self.fct = FC(4 * 4 * 512, 1)

    def forward(self, image):
        X = image / 255.0
        X = leaky_relu(self.conv1(X))
        X = leaky_relu(self.conv2(X))
        X = leaky_relu(self.conv3(X))
        X = leaky_relu(self.conv4(X))
        if self.conv5 is not None:
            X = leaky_relu(self.conv5(X))
        # TF flattens NHWC (h, w, c order); the fc weight is stored for that order.
        X = X.permute(0, 2, 3, 1).flatten(1)
        return self.fct(X)

class Splitter(nn.Module):
    """model.py: splitter. (A, x): the last int(512 * second_ratio) channels are the attribute."""
    def __init__(self, second_ratio=SECOND_RATIO, img_size=IMG_SIZE):
        super().__init__()
        self.num_ch = int(512 * second_ratio)
        self.conv1 = Conv(3, 128, bn=False)
        self.conv2 = Conv(128, 256, bn=True)
        self.conv3 = Conv(256, 512, bn=True)
        self.conv4 = Conv(512, 512, bn=True) if img_size == 128 else None

    def forward(self, image):
        X = image / 255.0
        X = leaky_relu(self.conv1(X))
        X = leaky_relu(self.conv2(X))
        X = leaky_relu(self.conv3(X))
        if self.conv4 is not None:
            X = leaky_relu(self.conv4(X))
        # Dense, not channel slices of a channels_last X: MPS has computed wrong values on those.
        return (X[:, :-self.num_ch].contiguous(memory_format=torch.channels_last),
                X[:, -self.num_ch:].contiguous(memory_format=torch.channels_last))

class Joiner(nn.Module):
    """model.py: joiner. Output (tanh + 1) * 255 / 2, in [0, 255]."""
    def __init__(self, img_size=IMG_SIZE):
        super().__init__()
        self.deconv1 = Conv(512, 512, bn=True, transpose=True)
        self.deconv2 = Conv(512, 256, bn=True, transpose=True)
        self.deconv3 = Conv(256, 128 if img_size == 128 else 3, bn=img_size == 128, transpose=True)
        self.deconv4 = Conv(128, 3, bn=False, transpose=True) if img_size == 128 else None
        self.b = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, A, x):
        X = torch.cat([A, x], dim=1)
        X = F.relu_(self.deconv1(X))
        X = F.relu_(self.deconv2(X))
        if self.deconv4 is not None:
            X = self.deconv4(F.relu_(self.deconv3(X))) + self.b
        else:
            X = self.deconv3(X) + self.b
        return (torch.tanh(X) + 1) * 255.0 / 2

# PyTorch state-dict names <-> official TF variable names, e.g. splitter.conv2.batch_normalization
# .running_mean <-> G_splitter/conv2/batch_normalization/moving_mean
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
    def __init__(self, second_ratio=SECOND_RATIO, img_size=IMG_SIZE, init=True):
        super().__init__()
        self.img_size = img_size
        self.splitter = Splitter(second_ratio, img_size)
        self.joiner = Joiner(img_size)
        self.D_Ax = Discriminator(img_size)
        self.D_Be = Discriminator(img_size)
        if init:
            initialize(self)

    def tf_state(self):
        """{TF name: tensor} over the state dict (BN step counters have no TF twin)."""
        return {tf_name(k): v for k, v in self.state_dict(keep_vars=True).items()
                if not k.endswith('num_batches_tracked')}

    def tf_variables(self):
        """All model variables as {official TF name: numpy array in TF layout}."""
        return {k: to_tf_layout(v.detach()).cpu().numpy().copy()
                for k, v in self.tf_state().items()}

    @torch.no_grad()
    def load_tf_variables(self, variables):
        """Load every variable of the official graph from {TF name: array in TF layout}."""
        ours = self.tf_state()
        for what, names in (('missing', set(ours) - set(variables)),
                            ('unknown', set(variables) - set(ours))):
            if names:
                raise ValueError(f'{what} TF variable {min(names)} ({len(names)} {what} in all)')
        shapes = {name: (list(np.shape(variables[name])), list(to_tf_layout(tensor).shape))
                  for name, tensor in ours.items()}
        for name, (got, expected) in shapes.items():
            if got != expected:
                raise ValueError(f'TF variable {name} has shape {got}, expected {expected}')
        for name, tensor in ours.items():
            tensor.copy_(from_tf_layout(variables[name], tensor))

# ---- losses and optimizer: model.py build_model --------------------------------------------------
def build_model(model, Ax, Be, train_G=True):
    """model.py: build_model. The six images and four critic outputs of one step; both training
    steps run all of it, so every BatchNorm updates as TF's UPDATE_OPS do. train_G=False (the D
    step: d_opt's var_list is D only) runs the generator without autograd."""
    with torch.set_grad_enabled(train_G and torch.is_grad_enabled()):
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
    """model.py: g_var_list, joiner then splitter, as (TF variable name, parameter) pairs."""
    return [(tf_name(f'{net}.{n}') + ':0', p) for net in ('joiner', 'splitter')
            for n, p in getattr(model, net).named_parameters()]

def d_var_list(model):
    """model.py: d_var_list: every trainable variable of both critics, BN and fc bias included."""
    return list(model.D_Ax.parameters()) + list(model.D_Be.parameters())

def G_loss(model, Ax, Be, t):
    """model.py: G_loss, loss_G_nodecay, loss_G_decay, loss_G."""
    loss = {}
    loss['e'] = t['e'].abs().mean()
    loss['cycle_Ax'] = (Ax - t['Ax2']).abs().mean() / 255.0
    loss['cycle_Be'] = (Be - t['Be2']).abs().mean() / 255.0
    loss['Bx'] = -t['fake_Bx'].mean()
    loss['Ae'] = -t['fake_Ae'].mean()
    loss['parallelogram'] = PARALLELOGRAM_WEIGHT * (Ax + Be - t['Bx'] - t['Ae']).abs().mean()
    loss['loss_G_nodecay'] = sum(loss.values())
    loss['loss_G_decay'] = 0.0
    for name, w in g_var_list(model):
        if name.startswith('G') and name.endswith('W:0'):
            loss['loss_G_decay'] += 0.5 * WEIGHT_DECAY * w.square().mean()
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
    """tf.train.RMSPropOptimizer(lr, decay=0.8) as TF1 computes it, momentum 0. Its "ms" slot
    starts at 1, not 0, and epsilon goes inside the root. torch.optim.RMSprop does neither; its
    first steps are sign-like (about 2.2 * lr per element) and miss the official weights."""
    def __init__(self, params, lr=LEARNING_RATE, decay=RMSPROP_DECAY, epsilon=RMSPROP_EPSILON):
        super().__init__(params, dict(lr=lr, decay=decay, epsilon=epsilon))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for w in group['params']:
                g = w.grad
                ms = self.state[w].get('ms')
                if ms is None:      # once: setdefault would fill a new tensor on every step
                    ms = self.state[w]['ms'] = torch.full_like(w, RMSPROP_MS_INIT)
                ms.add_((g * g - ms) * (1 - group['decay']))
                w.addcdiv_(g, torch.sqrt(ms + group['epsilon']), value=-group['lr'])

class Trainer:
    """The two update ops of model.py (d_opt + clip_d, g_opt) as train.py runs them. Each step
    takes float32 NCHW batches in [0, 255] and returns its losses (0-dim tensors, no host sync)
    on the weights it trains. bf16 (--bf16): the networks under autocast, the losses in float32."""
    def __init__(self, model, lr=LEARNING_RATE, clip_after_update=False, bf16=False):
        self.model, self.bf16, self.clip_after_update = model, bf16, clip_after_update
        self.g_params = [p for _, p in g_var_list(model)]
        self.d_params = d_var_list(model)
        self.g_opt = TFRMSProp(self.g_params, lr)
        self.d_opt = TFRMSProp(self.d_params, lr)

    def forward(self, Ax, Be, train_G=True):
        with torch.autocast(Ax.device.type, torch.bfloat16, enabled=self.bf16):
            t = build_model(self.model, Ax, Be, train_G)
        return {k: v.float() for k, v in t.items()}

    @torch.no_grad()
    def clip_d(self):
        """model.py: clip_d."""
        for p in self.d_params:
            p.clamp_(-CLIP_VALUE, CLIP_VALUE)

    def d_step(self, Ax, Be):
        # train.py runs d_opt and clip_d in one sess.run, unordered. TF runs the clip first (it
        # waits for nothing), then the update: the weights end up to one update beyond the bound.
        if not self.clip_after_update:
            self.clip_d()
        loss = D_loss(self.forward(Ax, Be, train_G=False))
        self.d_opt.zero_grad(set_to_none=True)
        loss['loss_D'].backward(inputs=self.d_params)
        self.d_opt.step()
        if self.clip_after_update:              # the order the parity numbers were recorded in
            self.clip_d()
        return {k: v.detach() for k, v in loss.items()}

    def g_step(self, Ax, Be):
        t = self.forward(Ax, Be)
        loss = G_loss(self.model, Ax, Be, t)
        self.g_opt.zero_grad(set_to_none=True)
        # inputs= keeps autograd from computing critic weight gradients nobody uses.
        loss['loss_G'].backward(inputs=self.g_params)
        self.g_opt.step()
        return {k: v.detach() for k, v in loss.items()}

# ---- train: train.py -----------------------------------------------------------------------------
def prepare_for_training(model, device, compile=False):
    """The model on the device in channels_last (oneDNN's and cuDNN's preferred layout); with
    compile, each of the four networks is torch.compile'd in place (state-dict names unchanged)."""
    model = model.to(device, memory_format=torch.channels_last)
    if compile:
        for net in (model.splitter, model.joiner, model.D_Ax, model.D_Be):
            net.compile()
    return model

@torch.inference_mode()
def evaluate(model, Ax, Be):
    """train.py: the merged summary, all losses on a fresh batch, BN statistics untouched."""
    with batch_stats_only(model):
        t = build_model(model, Ax, Be)
        loss = {**G_loss(model, Ax, Be, t), **D_loss(t)}
    return {k: float(v) for k, v in loss.items()}, dict(t, Ax=Ax, Be=Be)

def write_samples(t, sample_dir, i):
    """train.py: iter_{i:06d}_{j}.jpg, each the row [Ax, Be, Ae, Bx, Ax2, Be2]."""
    row = torch.cat([t['Ax'], t['Be'], t['Ae'], t['Bx'], t['Ax2'], t['Be2']], dim=3)
    row = row.permute(0, 2, 3, 1).cpu().numpy()
    for j in range(min(NUM_SAMPLE_ROWS, len(row))):
        imsave(os.path.join(sample_dir, 'iter_{:06d}_{}.jpg'.format(i, j)), row[j])

def train(args):
    """train.py: run. What train.py leaves to TF and its session (the data set and its queues,
    the device, the restore, folders, checkpoints and summaries, Ctrl-C) is class Run's, in the
    infrastructure section."""
    with Run(args) as run:
        model, trainer, sampler_A, sampler_B = run.model, run.trainer, run.sampler_A, run.sampler_B
        for i in run.iterations():
            d_num = args.d_burst if i % args.d_burst_every == 0 else 1

            # update D with clipping
            for j in range(d_num):
                loss_D = trainer.d_step(sampler_A.draw(), sampler_B.draw())
                run.watch(i, loss_D, f' (D step {j + 1} of {d_num})' if d_num > 1 else '')

            # update G
            loss_G = trainer.g_step(sampler_A.draw(), sampler_B.draw())
            run.watch(i, loss_G)

            if i % args.log_every == 0:
                run.summary(i, evaluate(model, sampler_A.draw(), sampler_B.draw())[0])

            # train.py saves, then samples. Sampling first lets the checkpoint hold the samplers
            # as iteration i + 1 finds them, so that a resumed run draws what a straight one does.
            if i % args.sample_every == 0:
                t = evaluate(model, sampler_A.draw(), sampler_B.draw())[1]
                write_samples(t, run.sample_dir, i)
                # train.py's image summaries are in its merged summary (every 20 iterations);
                # here they come with the samples: 100k iterations of them would be several GB.
                run.log.images(i, t)
            if i % args.save_every == 0:
                run.save(i, 'model_{:06d}.pt'.format(i))
            if run.stop.requested:
                break
        run.save_last()     # train.py: saver.save(sess, 'model.ckpt') after the loop

# ---- demos: test.py (swap_attribute, interpolation, interpolation_matrix) ------------------------
def imresize(img, size=IMG_SIZE):
    """test.py: scipy.misc.imresize(img, (64, 64)), which is PIL's bilinear resize of uint8
    (training resizes differently: train_resize). A 64x64 input passes unchanged, as in PIL."""
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

def _batch(model, img):
    """An HxWx3 image in [0, 255] -> a float32 NCHW batch of one on the model's device."""
    batch = np.array(imresize(img, model.img_size)[None])     # writable: PIL's arrays are not
    return to_device(batch, next(model.parameters()).device)

def _image(t):
    return t[0].permute(1, 2, 0).float().cpu().numpy()

def swap(model, src, att):
    """test.py: swap_attribute. out1 = Bx (src gains att's attribute), out2 = Ae (att loses it)."""
    with inference(model):
        # test.py feeds Ax = att_img, Be = src_img
        A, x = model.splitter(_batch(model, att))
        B, e = model.splitter(_batch(model, src))
        out1 = model.joiner(B, x)
        out2 = model.joiner(A, torch.zeros_like(e))
        return _image(out1), _image(out2)

def interpolation(model, src, att, n):
    """test.py: interpolation. The row [src, joiner(B, x * 1/n), ..., joiner(B, x * n/n)]."""
    with inference(model):
        A, x = model.splitter(_batch(model, att))
        B, e = model.splitter(_batch(model, src))
        out = [imresize(src, model.img_size).astype(np.float32)]
        for i in range(1, n + 1):
            lambda_i = i / float(n)
            out.append(_image(model.joiner(B, x * lambda_i)))
        return np.concatenate(out, axis=1)

def matrix(model, src, atts, size):
    """test.py: interpolation_matrix. An m x n grid blending four attribute codes bilinearly,
    framed by the attribute images (att0/att2 left, att1/att3 right) and white fill."""
    m, n = size
    rows = [[1 - i / float(m - 1), i / float(m - 1)] for i in range(m)]
    cols = [[1 - i / float(n - 1), i / float(n - 1)] for i in range(n)]
    four_tuple = [[row[0] * col[0], row[0] * col[1], row[1] * col[0], row[1] * col[1]]
                  for row in rows for col in cols]
    with inference(model):
        attributes = [model.splitter(_batch(model, att))[1] for att in atts]
        B = model.splitter(_batch(model, src))[0]
        out = []
        for i in range(m):
            out_row = []
            for j in range(n):
                four = four_tuple[i * n + j]
                attribute = sum([four[k] * attributes[k] for k in range(4)])
                out_row.append(_image(model.joiner(B, attribute)))
            out.append(np.concatenate(out_row, axis=1))
    out = np.concatenate(out, axis=0)
    atts = [imresize(att, model.img_size).astype(np.float32) for att in atts]
    white = np.full(((m - 2) * model.img_size, model.img_size, 3), 255, np.float32)
    first_col = np.concatenate((atts[0], white, atts[2]), axis=0)
    last_col = np.concatenate((atts[1], white, atts[3]), axis=0)
    return np.concatenate((first_col, out, last_col), axis=1)

def demo(args):
    """test.py: main. Checks every input before the model runs, so bad input writes nothing."""
    device = pick_device(args.device)
    src = read_image(args.input)
    targets = [read_image(p) for p in (args.targets if args.command == 'matrix' else [args.target])]
    model = load_model(args, device)[2]
    if args.command == 'swap':             # out1 = Bx, out2 = Ae
        outputs = dict(zip(('out1.jpg', 'out2.jpg'), swap(model, src, targets[0])))
    elif args.command == 'interpolation':
        outputs = {'interpolation.jpg': interpolation(model, src, targets[0], args.num)}
    else:
        outputs = {'four_matrix.jpg': matrix(model, src, targets, args.size)}
    os.makedirs(args.out_dir, exist_ok=True)
    for name, img in outputs.items():
        imsave(os.path.join(args.out_dir, name), img)
    print('wrote ' + ' '.join(os.path.join(args.out_dir, name) for name in outputs))

# ---- infrastructure: the run, devices, the image cache, checkpoints, logs, run lock, stops -------
class Run:
    """train()'s setup and bookkeeping. Setup: the data set, its cache and the two samplers
    (without held-out or unreadable rows), the model and its Trainer on the device, --resume from
    latest.pt, the folders, the run lock, the metrics log and Ctrl-C (released on exit). Each
    iteration: its losses watched for non-finite values, and the checkpoints."""
    def __init__(self, args):
        self.args = args
        self.device = device = pick_device(args.device, args.tf32, args.deterministic,
                                           args.bf16)
        data = load_dataset(args.data_dir, args.attribute, args.partition == 'train')
        args.attribute, args.data = data.attribute, data.identity()     # recorded in the config
        held = data.rows('val', 'test') if args.partition == 'train' else set()   # train.py: all
        self.model_dir = os.path.join(args.exp_dir, 'model')
        self.latest = os.path.join(self.model_dir, 'latest.pt')
        refuse(args.resume and not os.path.isfile(self.latest),
               f'--resume: no checkpoint at {self.latest}')
        refuse(not args.resume and os.path.exists(self.latest), f'{args.exp_dir} already holds a '
               f'run ({self.latest}); pass --resume to continue it, or choose another --exp_dir')
        ckpt = load_checkpoint(self.latest, device) if args.resume else None
        if ckpt:
            require_same_config(ckpt, self.latest, args, 'data', 'second_ratio', 'partition',
                                'attribute', 'img_size', 'bf16')
        images, bad, _ = load_cache(data, args.num_workers, args.skip_bad, args.img_size)
        samplers = []
        for idxs, seed, name in ((data.idxs1, args.seed, 'A'), (data.idxs2, args.seed + 1, 'B')):
            idxs = [i for i in idxs if i not in bad | held]
            refuse(args.batch_size > len(idxs),
                   f'--batch_size {args.batch_size} is larger than set {name} '
                   f'({len(idxs)} training images)')
            samplers.append(Sampler(images, idxs, args.batch_size, seed, device))
        self.sampler_A, self.sampler_B = samplers

        torch.manual_seed(args.seed)
        self.model = prepare_for_training(GeneGAN(args.second_ratio, args.img_size, not ckpt),
                                          device, args.compile)
        self.trainer = Trainer(self.model, args.lr, args.clip_after_update, args.bf16)
        self.state = dict(model=self.model, g_opt=self.trainer.g_opt, d_opt=self.trainer.d_opt,
                          sampler_A=self.sampler_A, sampler_B=self.sampler_B)   # a checkpoint's
        self.start = ckpt['iter'] if ckpt else 0
        if ckpt:
            for key, value in self.state.items():
                value.load_state_dict(ckpt[key])
            torch.set_rng_state(ckpt['torch_rng'].cpu())
        self.i = self.start - 1         # the iteration reached
        self.pending = {}   # {(iteration, loss name): 0-dim tensor}, checked at each log and save
        self.sample_dir, log_dir = (os.path.join(args.exp_dir, d) for d in ('sample_img', 'logs'))
        for d in (self.model_dir, self.sample_dir, log_dir):
            os.makedirs(d, exist_ok=True)
        self.lock = hold_exp_dir(args.exp_dir)
        self.config = {k: v for k, v in vars(args).items() if k != 'func'}
        self.log = MetricsLog(log_dir, self.start)
        self.stop = StopRequest()
        self.bar = tqdm(range(self.start, args.max_iter), initial=self.start, total=args.max_iter,
                        desc='train', unit='it', dynamic_ncols=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, err, traceback):
        self.bar.close()
        self.log.close()
        self.stop.restore()
        self.lock.close()
        # a compiler backend that cannot run here fails on the first step
        if isinstance(err, Exception) and self.args.compile and self.i == self.start:
            raise UserError(f'--compile failed on {self.device} ({err!r:.150}); run without '
                            f'--compile')

    def iterations(self):
        for self.i in self.bar:
            yield self.i

    def watch(self, i, loss, step=''):
        self.pending.update({(i, name + step): v for name, v in loss.items()})

    def check(self, i=None):
        """Stop on a non-finite loss since the last check; with i (before a save), or weight."""
        bad = non_finite(self.pending) if self.pending else None
        what = bad and f'iteration {bad[0]}: loss {bad[1]} is {float(self.pending[bad])}'
        self.pending.clear()
        if not what and i is not None:
            # Losses are those before each update: a step that broke the weights shows only here.
            var = non_finite(self.model.tf_state())
            what = var and f'iteration {i}: variable {var} is not finite after the update'
        kept = self.latest if os.path.exists(self.latest) else 'none yet'
        refuse(what, f'{what}; training stopped, the last good checkpoint ({kept}) is kept')

    def summary(self, i, values):
        """train.py: the merged summary's scalars, learning rates included."""
        self.check()
        values.update(g_learning_rate=self.args.lr, d_learning_rate=self.args.lr)
        self.log.log(i, values)
        self.bar.set_postfix(loss_G=f'{values["loss_G"]:.4f}', loss_D=f'{values["loss_D"]:.4f}')

    def save(self, i, *names):
        """NAMES and latest.pt in the model folder, holding iteration i + 1 to run next; the
        oldest model_*.pt beyond --keep are deleted."""
        self.check(i)
        save_checkpoint([os.path.join(self.model_dir, n) for n in (*names, 'latest.pt')],
                        dict({k: v.state_dict() for k, v in self.state.items()},
                             format=CHECKPOINT_FORMAT, iter=i + 1, config=self.config,
                             torch_rng=torch.get_rng_state()))
        for old in sorted(glob.glob(os.path.join(self.model_dir, 'model_*.pt')))[:-self.args.keep]:
            os.remove(old)

    def save_last(self):
        """latest.pt after the loop (done, or stopped), unless its last iteration saved it."""
        if self.i >= self.start and self.i % self.args.save_every != 0:
            self.save(self.i)
        print(f'stopped after iteration {self.i}: saved {self.latest}; continue with --resume'
              if self.stop.requested
              else f'done: {self.args.max_iter} iterations, checkpoint {self.latest}')

def pick_device(name='auto', tf32=False, deterministic=False, bf16=False):
    """'auto' = mps, then cuda, then cpu. Everything runs in float32, as the TF code does: TF32 is
    off on CUDA unless asked for. deterministic: PyTorch's reproducibility recipe, no autotuning.
    bf16: refused where the GPU lacks native bfloat16; said where the CPU lacks it."""
    available = [d for d, ok in (('mps', torch.backends.mps.is_available()),
                                 ('cuda', torch.cuda.is_available()), ('cpu', True)) if ok]
    refuse(name != 'auto' and name.split(':')[0] not in available,
           f'device {name!r} is not available here; '
           f'available: auto, {", ".join(available)}')
    device = torch.device(available[0] if name == 'auto' else name)
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')    # before cuBLAS starts
        torch.use_deterministic_algorithms(True)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    if bf16:    # native: CUDA's own check, MPS from macOS 14, x86 CPUs AVX512_BF16 or AMX
        native = (torch.cuda.is_bf16_supported(including_emulation=False) if device.type == 'cuda'
                  else torch.backends.mps.is_macos_or_newer(14, 0) if device.type == 'mps'
                  else None if platform.machine().lower() not in ('x86_64', 'amd64')
                  else torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        refuse(device.type != 'cpu' and not native, f'--bf16: {device} has no native bfloat16 '
               f'(CUDA needs compute capability 8.0 or later, MPS macOS 14); run without --bf16')
        print(f'--bf16: native bfloat16 on {device}: ' + {True: 'yes', None: 'unknown (not x86)',
              False: 'no, and it may run many times slower than float32'}[native], file=sys.stderr)
    return device

def _cache_one(job):
    path, size, img_size = job
    try:
        return train_resize(read_image(path, size), img_size), None
    except UserError as err:
        return None, str(err)

def load_cache(data, num_workers=0, skip_bad=False, size=IMG_SIZE):
    """Every image of the data set resized for training, memory-mapped from its cache file,
    rebuilt when a file's name, size or mtime changes. Returns (images, bad rows, fingerprint)."""
    cache = f'{data.cache}_{size}x{size}.npy'
    root = len(os.path.dirname(cache) + os.sep)  # names relative to the data folder
    stats = []
    for path in data.paths:                     # one stat per file: CelebA has 202,599
        try:
            st = os.stat(path)
            stats.append(f'{path[root:]}:{st.st_size}:{st.st_mtime_ns}')
        except OSError:
            stats.append(f'{path[root:]}:missing')
    fingerprint = hashlib.sha256('\n'.join(stats).encode()).hexdigest()
    meta = None
    with contextlib.suppress(OSError, ValueError), open(cache[:-4] + '.json') as f:
        meta = json.load(f)                     # missing or unreadable: rebuilt below
    if not (os.path.exists(cache) and meta and meta.get('fingerprint') == fingerprint):
        meta = build_cache(data, cache, size, fingerprint, num_workers)
    bad = meta['bad']
    shown = '; '.join(why for _, why in bad[:3]) + ('; ...' if len(bad) > 3 else '')
    refuse(bad and not skip_bad, f'{len(bad)} image(s) missing or unreadable (all listed in '
           f'{cache[:-4]}_bad.txt): {shown}. Re-align or replace them, or pass --skip_bad to '
           f'train without them')
    return np.load(cache, mmap_mode='r'), {i for i, _ in bad}, fingerprint

def cache_dtype(paths, size):
    """uint8 where every image's resize is an exact sample (sides that are multiples of size), else
    float32: TF's bilinear values are not integers, and training sees them unrounded."""
    for path in paths:
        with contextlib.suppress(OSError, SyntaxError, ValueError, Image.DecompressionBombError), \
                Image.open(path) as im:         # an unreadable file is reported by the build
            if im.size[0] % size or im.size[1] % size:
                return np.float32
    return np.uint8

def build_cache(data, cache, size, fingerprint, num_workers):
    tmp = own_temp(cache[:-4], '.tmp.npy')     # two trainings may build one cache at once
    bad = []
    try:
        with Pool(num_workers) if num_workers > 0 else contextlib.nullcontext() as pool:
            images = np.lib.format.open_memmap(
                tmp, mode='w+', dtype=np.uint8 if data.size else cache_dtype(data.paths, size),
                shape=(len(data.paths), size, size, 3))
            jobs = [(path, data.size, size) for path in data.paths]
            results = pool.imap(_cache_one, jobs, chunksize=64) if pool else map(_cache_one, jobs)
            bar = tqdm(results, total=len(jobs), desc=f'cache {size}x{size}')
            for i, (img, why) in enumerate(bar):
                if why is None:
                    images[i] = img
                else:
                    bad.append((i, why))
            images.flush()
            del images
        os.replace(tmp, cache)
    finally:                                    # an interrupted build leaves no temp file
        with contextlib.suppress(OSError):
            os.remove(tmp)
    atomic_write([cache[:-4] + '_bad.txt'], ''.join(f'{why}\n' for _, why in bad).encode())
    meta = dict(fingerprint=fingerprint, bad=bad)
    atomic_write([cache[:-4] + '.json'], json.dumps(meta).encode())
    return meta

def atomic_write(paths, data):
    """Write DATA (bytes, or a function that writes into an open file) to each path through a temp
    file of this process's own, fsync and rename: a kill or a full disk at any moment leaves the
    file that was there before intact. The paths after the first are hard links to it (a
    checkpoint's 181 MB is written once), or copies on a file system without links."""
    for path in paths:
        tmp = own_temp(path)
        try:
            with contextlib.suppress(OSError):
                if path != paths[0]:
                    os.link(paths[0], tmp)
            if not os.path.exists(tmp):         # the first path, or no link to be had
                with open(tmp, 'wb') as f:
                    data(f) if callable(data) else f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            why = err if isinstance(err, OSError) else err.__context__   # torch.save's RuntimeError
            if not isinstance(why, OSError):                            # holds the write's OSError
                raise
            raise UserError(f'could not write {path} ({why.strerror or why}); '
                            f'the previous file is left as it was')

def save_checkpoint(paths, state):
    """Streamed into the file: no copy of the checkpoint in memory."""
    atomic_write(paths, lambda f: torch.save(state, f))

def load_checkpoint(path, device='cpu', fmt=CHECKPOINT_FORMAT, keys=CHECKPOINT_KEYS):
    """A file this project wrote, loaded with weights_only=True: one whose pickle would run code
    is refused, never executed (and torch's advice to turn the check off is not passed on)."""
    refuse(not os.path.isfile(path), f'checkpoint not found: {path}')
    with open(path, 'rb') as f:
        head = f.read(4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')     # torch's warning about the pickle protocol
            ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        call = re.search(r'GLOBAL (\S+)', str(err))
        raise UserError(f'refused to load {path}: it would call {call[1] if call else "code"} '
                        f'when unpickled, and only weights are loaded')
    except Exception:
        raise UserError(f'{path} is ' + ('empty' if not head else 'truncated or damaged'
                        if head == b'PK\x03\x04' else 'not a PyTorch file'))
    refuse(not isinstance(ckpt, dict) or ckpt.get('format') != fmt,
           f'{path} is a PyTorch file, but not a {fmt} file of this project')
    missing = [key for key in keys if key not in ckpt]
    refuse(missing, f'{path} lacks {", ".join(missing)} (not written by genegan.py?)')
    if 'config' in keys:                        # written before 128x128 and --bf16 existed
        ckpt['config'] = {'img_size': IMG_SIZE, 'bf16': False, **ckpt['config']}
    return ckpt

def load_model(args, device):
    """--ckpt, else the newest checkpoint (latest.pt, else model_*.pt) in --model_dir or its model/,
    and the model rebuilt from that checkpoint's own config. Returns (path, checkpoint, model)."""
    path = args.ckpt
    for folder in [] if path else [args.model_dir, os.path.join(args.model_dir, 'model')]:
        saved = sorted(glob.glob(os.path.join(folder, 'model_*.pt')))
        latest = os.path.join(folder, 'latest.pt')
        path = path or (latest if os.path.isfile(latest) else saved[-1] if saved else None)
    refuse(not path, f'no checkpoint in {args.model_dir} or its model/ (train first: python '
                     f'genegan.py train --exp_dir DIR writes DIR/model/; or pass --ckpt PATH)')
    ckpt = load_checkpoint(path, device)
    try:
        model = GeneGAN(ckpt['config']['second_ratio'], ckpt['config']['img_size'], init=False)
        model.load_state_dict(ckpt['model'])
    except (RuntimeError, KeyError, TypeError) as err:
        raise UserError(f'checkpoint {path} does not fit its own config: '
                        f'{str(err).splitlines()[0]}')
    return path, ckpt, model.to(device)

class MetricsLog:
    """logs/metrics.jsonl (one JSON object per logged iteration), and TensorBoard scalars and
    images beside it where tensorboard is installed. On resume, records of iterations that will
    run again, and a last line torn by a kill or a full disk, are dropped."""
    def __init__(self, log_dir, start):
        self.path = os.path.join(log_dir, 'metrics.jsonl')
        keep = []
        with contextlib.suppress(FileNotFoundError), open(self.path) as f:
            for line in f:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    if json.loads(line)['iter'] < start:
                        keep.append(line.rstrip('\n') + '\n')
        atomic_write([self.path], ''.join(keep).encode())
        self.file = open(self.path, 'a')
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir, purge_step=start or None)
        except ImportError:
            print(f'tensorboard is not installed: metrics go to {self.path} only', file=sys.stderr)

    def log(self, i, values):
        self.file.write(json.dumps({'iter': i, **values}) + '\n')
        self.file.flush()
        for key, value in values.items() if self.writer else ():
            self.writer.add_scalar(key, value, i)

    def images(self, i, t):
        for key in IMAGE_KEYS if self.writer else ():
            self.writer.add_images(key, t[key][:NUM_SUMMARY_IMAGES] / 255.0, i)

    def close(self):
        self.file.close()
        if self.writer is not None:
            self.writer.close()

class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM ask the loop to stop at the end of the current iteration and
    save; a second Ctrl-C stops at once."""
    def __init__(self):
        self.requested = False
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print('\nstopping at the end of this iteration to save a checkpoint '
              '(Ctrl-C again quits without saving)', file=sys.stderr)

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

def hold_exp_dir(exp_dir):
    """One training per EXP_DIR: an flock, which the OS drops when the process ends, killed too
    (POSIX: Windows has no flock, and the folder is not locked there)."""
    lock = open(os.path.join(exp_dir, 'train.lock'), 'a+')
    with contextlib.suppress(BlockingIOError):
        if os.name == 'posix':
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        print(os.getpid(), file=lock, flush=True)
        return lock
    lock.seek(0)
    raise UserError(f'{exp_dir} is in use by a running training (process {lock.read().strip()}, '
                    f'{lock.name}); wait for it to end, or choose another --exp_dir')

def require_same_config(ckpt, path, args, *keys):
    config = ckpt['config']
    for key in keys:
        saved = config.get(key, getattr(args, key))   # older checkpoints lack 'data'
        if saved != getattr(args, key):
            fix = (f'pass --data_dir {config["data_dir"]} --attribute {config["attribute"]}'
                   if key == 'data' else f'pass --{key} {saved}' if not isinstance(saved, bool)
                   else f'{"pass" if saved else "run without"} --{key}')
            raise UserError(f'{path} was trained with {key} {saved!r}, not '
                            f'{getattr(args, key)!r}: {fix}')

def non_finite(named):
    """The first key of {key: tensor} whose tensor is not all finite, or None: one host sync."""
    finite = torch.stack([torch.isfinite(v).all() for v in named.values()]).cpu()
    return None if finite.all() else list(named)[int((~finite).nonzero()[0])]

# ---- CLI -----------------------------------------------------------------------------------------
def at_least(low):
    """An argparse type: an integer of at least LOW, checked before anything runs."""
    def integer(text):
        if int(text) < low:
            raise argparse.ArgumentTypeError(f'must be at least {low}')
        return int(text)
    return integer

class Help(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):         # no "(default: None)"
        return action.help if action.default is None else super()._get_help_string(action)

# This project's own commands: extras/MODULE.py holds each one's flags and its main(args).
ADDITIONS = {'eval': ('evaluation', 'score a checkpoint: transfer, removal, PSNR'),
             'toy': ('toy', 'write a toy data set: CelebA\'s files or two folders'),
             'bench': ('bench', 'time training, sampling and alignment on synthetic data'),
             'edit': ('edit', 'your photo with an attribute put in or taken out, at its size')}

def build_parser(run=None):
    """The CLI; RUN names the command to be run, whose module alone is imported (its flags)."""
    parser = Parser(description='GeneGAN (arXiv:1705.04932), a port of the official TF code.')
    sub = parser.add_subparsers(dest='command', required=True)

    shared = {}

    def share(group, *names, **kw):     # a flag of several commands, in an argparse parent
        shared.setdefault(group, argparse.ArgumentParser(add_help=False)).add_argument(*names, **kw)
    share('attr', '-a', '--attr', '--attribute', dest='attribute', help=(
        'column of list_attr_celeba, 1 = set A, -1 = B (default Smiling); two folders: a name '
        '(default trainA)'))
    share('data', '--data_dir', default='datasets/celebA',
          help='CelebA, a toy set, or two folders trainA/ trainB/')
    share('workers', '--num_workers', type=int, default=os.cpu_count(),
          help='processes that build the training cache')
    share('device', '--device', default='auto', help='auto (mps, cuda, cpu), or a name')
    share('speed', '--compile', action='store_true', help='torch.compile the 4 networks')
    share('speed', '--tf32', action='store_true', help='allow TF32 on CUDA (TF: float32)')
    share('speed', '--bf16', action='store_true',
          help='networks in bfloat16 (autocast), weights, losses float32 (TF: float32)')
    share('speed', '--img_size', type=int, choices=IMG_SIZES, default=IMG_SIZE,
          help='image side: 64 (dataset.py), or 128 with one more layer a network')
    share('model', '--model_dir', default='train_log/model',
          help='the newest checkpoint in this folder (or its model/)')
    share('model', '--ckpt', help='a checkpoint file (instead of --model_dir)')

    def command(name, func, help, parents=()):
        p = sub.add_parser(name, help=help, parents=[shared[k] for k in parents],
                           formatter_class=Help)
        p.set_defaults(func=func)
        return p.add_argument

    add = command('train', train, 'train on CelebA or two folders (train.py)',
                  ['attr', 'data', 'device', 'workers', 'speed'])
    add('--exp_dir', default='train_log', help='model/, logs/ and sample_img/ go here')
    for flag, default, what in (
            ('max_iter', MAX_ITER, 'iterations to train (dataset.py: max_iter)'),
            ('batch_size', BATCH_SIZE, 'faces of each set in a step (dataset.py: nhwc)'),
            ('d_burst', D_BURST, 'critic steps in a burst iteration (train.py: d_num)'),
            ('d_burst_every', D_BURST_EVERY, 'a burst every N iterations, else 1 (train.py)'),
            ('save_every', SAVE_EVERY, 'model_ITER.pt and latest.pt every N iterations (train.py)'),
            ('sample_every', SAMPLE_EVERY, 'sample_img/ rows every N iterations (train.py)'),
            ('log_every', LOG_EVERY, 'losses to logs/ every N iterations (train.py)')):
        add(f'--{flag}', type=at_least(1), default=default, help=what)
    add('--seed', type=int, default=0, help='seed of the initial weights and of the sampling')
    add('--lr', type=float, default=LEARNING_RATE, help='learning rate of G and D (dataset.py)')
    add('--second_ratio', type=float, default=SECOND_RATIO,
        help='share of the code\'s channels that is the attribute x (dataset.py)')
    add('--clip_after_update', action='store_true',
        help='clip the critics after their update (TF clips first; the parity numbers after)')
    add('--keep', type=at_least(1), default=KEEP_CHECKPOINTS,
        help='newest model_*.pt kept, older deleted (tf.train.Saver\'s max_to_keep)')
    add('--partition', choices=('all', 'train'), default='all',
        help='all rows (train.py), or the train rows of list_eval_partition (or trainA/B)')
    add('--resume', action='store_true', help='continue from EXP_DIR/model/latest.pt')
    add('--skip_bad', action='store_true', help='train without images that are unreadable')
    add('--deterministic', action='store_true', help='deterministic kernels: exact resume on CUDA')

    for mode, help_text in (('swap', 'swap an attribute between two faces'),
                            ('interpolation', 'scale an attribute: interpolation.jpg'),
                            ('matrix', 'blend four attribute codes: four_matrix.jpg')):
        add = command(mode, demo, f'{help_text} (test.py)', ['model', 'device'])
        add('-i', '--input', required=True, help='source image')
        if mode == 'matrix':
            add('--targets', nargs=4, required=True, help='four images with the attribute')
            add('-s', '--size', nargs=2, type=at_least(2), default=[3, 3], metavar=('M', 'N'),
                help='grid rows, columns (test.py divides by M-1 and N-1)')
        else:
            add('-t', '--target', required=True, help='image with the attribute')
        if mode == 'interpolation':
            add('-n', '--num', type=at_least(1), default=2, help='interpolation steps')
        add('--out_dir', default='.', help='created if missing')

    for name, (module, help_text) in ADDITIONS.items():
        if name != run:                 # listed in --help; its module is imported to run it
            command(name, None, help_text)
            continue
        extra = importlib.import_module(f'extras.{module}')
        extra.add_flags(command(name, extra.main, help_text, extra.SHARED_FLAGS))
    return parser

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        args.func(args)
    except (UserError, OSError) as err:     # OSError: the file system (full disk, permissions)
        print(f'error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted: nothing saved since the last checkpoint', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':     # hand over to the module that extras/ imports: one copy of each
    import genegan
    sys.exit(genegan.main())
