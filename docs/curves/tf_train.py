"""Trains the official GeneGAN graph (model.py, unmodified) with train.py's loop on a toy set's
64x64 cache, and logs train.py's summary losses as JSONL. An experiment beside the project, never
part of it: it runs in its own venv with TensorFlow (see docs/curves/README.md).

    python docs/curves/tf_train.py --official GENEGAN_CHECKOUT --data_dir toy2000 --seed 0 \
        --batch_size 8 --max_iter 600 --out docs/curves/tf_seed0.jsonl

Each record also holds d_beyond_clip and d_max_abs: how many critic weights lie outside
[-0.01, 0.01] after the iteration's last `sess.run([d_opt, loss_D, clip_d])`, and the largest
|weight|, which show the order TF ran the update and the clip in.
"""
import argparse
import json
import os
import time

import numpy as np

from tf_official import official_model, tf


def read_sets(data_dir, attribute):
    """dataset.py: rows marked 1 in list_attr_celeba.txt are set A, -1 set B."""
    with open(os.path.join(data_dir, 'list_attr_celeba.txt')) as f:
        lines = f.read().strip().split('\n')
    col = lines[1].split().index(attribute) + 1
    values = [int(line.split()[col]) for line in lines[2:]]
    return ([i for i, v in enumerate(values) if v == 1],
            [i for i, v in enumerate(values) if v == -1])


class Sampler:
    """Per-epoch permutations of one set (the port's sampler; a numpy generator here)."""
    def __init__(self, images, idxs, batch_size, seed):
        self.images, self.idxs, self.batch_size = images, np.asarray(idxs), batch_size
        self.rng = np.random.RandomState(seed)
        self.perm, self.pos = np.zeros(0, np.int64), 0

    def draw(self):
        rows = []
        while len(rows) < self.batch_size:
            if self.pos == len(self.perm):
                self.perm, self.pos = self.rng.permutation(len(self.idxs)), 0
            take = min(self.batch_size - len(rows), len(self.perm) - self.pos)
            rows.extend(self.idxs[self.perm[self.pos:self.pos + take]])
            self.pos += take
        return self.images[rows].astype(np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--official', required=True, help='a checkout of Prinsphield/GeneGAN (model.py)')
    p.add_argument('--data_dir', required=True, help='a toy set with align_5p_64x64.npy')
    p.add_argument('--attr', default='Smiling')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--max_iter', type=int, default=600)
    p.add_argument('--log_every', type=int, default=10)
    p.add_argument('--threads', type=int, default=0, help='intra-op threads (0: TF\'s default)')
    p.add_argument('--out', required=True)
    args = p.parse_args()

    tf.set_random_seed(args.seed)
    model = official_model(args.official, args.batch_size, args.max_iter)
    lr = 5e-5                           # dataset.py: g_lr, d_lr (decay_rate 1: constant)
    images = np.load(os.path.join(args.data_dir, 'align_5p_64x64.npy'))
    idxs1, idxs2 = read_sets(args.data_dir, args.attr)
    batch1 = Sampler(images, idxs1, args.batch_size, args.seed)
    batch2 = Sampler(images, idxs2, args.batch_size, args.seed + 1)
    losses = dict(model.G_loss, loss_G_nodecay=model.loss_G_nodecay,
                  loss_G_decay=model.loss_G_decay, loss_G=model.loss_G, **model.D_loss,
                  loss_D=model.loss_D)
    # inter-op scheduling stays TF's default: it decides the order of the update and the clip
    session_config = (tf.ConfigProto(intra_op_parallelism_threads=args.threads)
                      if args.threads else None)
    sess = tf.Session(config=session_config)
    sess.run(tf.global_variables_initializer())

    def feed():
        return {model.Ax: batch1.draw(), model.Be: batch2.draw(), model.g_lr: lr, model.d_lr: lr}

    t0 = time.time()
    with open(args.out, 'w') as out:
        for i in range(args.max_iter):          # train.py: run
            d_num = 100 if i % 500 == 0 else 1
            for j in range(d_num):
                sess.run([model.d_opt, model.loss_D, model.clip_d], feed_dict=feed())
            sess.run([model.g_opt, model.loss_G], feed_dict=feed())
            if i % args.log_every == 0:         # train.py: the merged summary, on a fresh batch
                values = sess.run(losses, feed_dict=feed())
                d_vars = sess.run(model.d_var_list)
                beyond = sum(int((np.abs(w) > 0.01).sum()) for w in d_vars)
                record = dict(iter=i, **{k: float(v) for k, v in values.items()},
                              d_beyond_clip=beyond,
                              d_max_abs=max(float(np.abs(w).max()) for w in d_vars),
                              seconds=round(time.time() - t0, 1))
                out.write(json.dumps(record) + '\n')
                out.flush()


if __name__ == '__main__':
    main()
