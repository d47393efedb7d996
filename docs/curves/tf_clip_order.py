"""Which order TF runs train.py's `sess.run([model.d_opt, model.loss_D, model.clip_d])` in: the
official graph (model.py, unmodified) from its initial weights, where most critic weights lie
beyond the clip bound, so that the order shows. An experiment beside the project, in its own venv
with TensorFlow (see docs/curves/README.md); its output is docs/curves/tf_clip_order.txt.

    python docs/curves/tf_clip_order.py --official GENEGAN_CHECKOUT > docs/curves/tf_clip_order.txt

Per seed: the loss_D that the run reports, against loss_D on the same batch with the weights
unclipped and clipped; after the run, the largest |w| over the critic variables and the largest
|w - clip(w0)| (w0: the weights before it). Clip first: |w| exceeds 0.01 by at most one RMSProp
update (lr / sqrt(0.2) = 1.1e-4 for lr 5e-5), and w - clip(w0) is that update. Update first:
|w| <= 0.01 everywhere.
"""
import argparse

import numpy as np

from tf_official import official_model, tf


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--official', required=True, help='a checkout of Prinsphield/GeneGAN (model.py)')
    p.add_argument('--batch_size', type=int, default=2)
    p.add_argument('--seeds', type=int, default=3)
    args = p.parse_args()
    print(f'TF {tf.__version__}, batch {args.batch_size}, default session config')
    for seed in range(args.seeds):
        tf.reset_default_graph()
        tf.set_random_seed(seed)
        model = official_model(args.official, args.batch_size)
        sess = tf.Session()
        sess.run(tf.global_variables_initializer())
        rng = np.random.RandomState(seed)
        shape = (args.batch_size, 64, 64, 3)
        feed = {model.Ax: rng.randint(0, 256, shape).astype(np.float32),
                model.Be: rng.randint(0, 256, shape).astype(np.float32),
                model.g_lr: 5e-5, model.d_lr: 5e-5}
        # copies: sess.run returns arrays that share memory with ref variables
        w0 = [w.copy() for w in sess.run(model.d_var_list)]
        unclipped = sess.run(model.loss_D, feed)
        sess.run(model.clip_d)
        clipped = sess.run(model.loss_D, feed)
        for var, w in zip(model.d_var_list, w0):
            var.load(w, sess)
        _, reported, _ = sess.run([model.d_opt, model.loss_D, model.clip_d], feed_dict=feed)
        w1 = [w.copy() for w in sess.run(model.d_var_list)]
        beyond = sum(int((np.abs(w) > 0.01).sum()) for w in w1)
        max_abs = max(np.abs(w).max() for w in w1)
        from_clipped = max(np.abs(b - np.clip(a, -0.01, 0.01)).max() for a, b in zip(w0, w1))
        print(f'seed {seed}: loss_D reported {reported:.3g}, on the clipped weights {clipped:.3g}, '
              f'on the unclipped {unclipped:.3g}; after the run: max|w| {max_abs:.6f}, '
              f'max|w - clip(w0)| {from_clipped:.2e}, {beyond} of {sum(w.size for w in w1)} '
              f'weights beyond 0.01 (before: {sum(int((np.abs(w) > 0.01).sum()) for w in w0)})')


if __name__ == '__main__':
    main()
