"""Seconds per training iteration of the official GeneGAN graph (model.py, unmodified): one
train.py D step (sess.run([d_opt, loss_D, clip_d])) and one G step on random batches, the
median over --iters after one warm-up, as `genegan.py bench` times the port. An experiment beside
the project, in its own venv with TensorFlow (see docs/curves/README.md).

    python docs/curves/tf_bench.py --official GENEGAN_CHECKOUT --batch_size 64 --iters 3
"""
import argparse
import time

import numpy as np

from tf_official import official_model, tf


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--official', required=True, help='a checkout of Prinsphield/GeneGAN (model.py)')
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--iters', type=int, default=3)
    args = p.parse_args()
    tf.set_random_seed(0)
    model = official_model(args.official, args.batch_size)
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (8 * args.batch_size, 64, 64, 3)).astype(np.float32)

    def feed():
        rows = rng.randint(0, len(images), 2 * args.batch_size)
        return {model.Ax: images[rows[:args.batch_size]], model.Be: images[rows[args.batch_size:]],
                model.g_lr: 5e-5, model.d_lr: 5e-5}

    def iteration():                        # train.py's loop body with d_num = 1
        sess.run([model.d_opt, model.loss_D, model.clip_d], feed_dict=feed())
        sess.run([model.g_opt, model.loss_G], feed_dict=feed())

    iteration()                             # warm-up
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - t0)
    print(f'official graph, TF {tf.__version__}, batch {args.batch_size}: '
          f'{np.median(times):.3f} s per iteration (median of {args.iters})')


if __name__ == '__main__':
    main()
