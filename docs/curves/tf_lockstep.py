"""The official graph (model.py, unmodified) on a fixed schedule and a fixed stream of batches,
recording everything the port needs to replay it in lockstep (port_lockstep.py). An experiment
beside the project, in its own venv with TensorFlow (see docs/curves/README.md).

    python docs/curves/tf_lockstep.py --official GENEGAN_CHECKOUT --data_dir toy2000 --out a.npz
    python docs/curves/tf_lockstep.py ... --init a.npz --out b.npz          # the same run again
    python docs/curves/tf_lockstep.py ... --init a.npz --nudge --out e.npz  # weights 1 ulp apart

The schedule is lockstep_schedule.py's. A D step is train.py's combined
sess.run([d_opt, loss_D, clip_d]), or with --clip_after sess.run([d_opt, loss_D]) and then
sess.run(clip_d), the order the parity numbers were recorded in. The record (.npz): the initial
weights (init/NAME, every model variable in TF names and layouts; from --init, or the seeded
initialiser), the rows of the toy cache of every step's Ax and Be (rows), every step's loss
(loss_D, loss_G), the critics' outputs on a fixed probe batch after every iteration (probe;
BatchNorm in training mode, as train.py computes them, moving statistics untouched), a sample of
every variable at the end of each phase (phase/K/NAME, the first SAMPLE values), and the final
weights (final/NAME).
"""
import argparse
import time

import numpy as np

from lockstep_schedule import BURSTS, ITERS, SAMPLE, phase_of
from tf_official import official_model, tf
from tf_train import Sampler, read_sets


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--official', required=True, help='a checkout of Prinsphield/GeneGAN (model.py)')
    p.add_argument('--data_dir', required=True, help='a toy set with align_5p_64x64.npy')
    p.add_argument('--init', help='a record whose initial weights and rows to use')
    p.add_argument('--clip_after', action='store_true', help='clip in a run of its own')
    p.add_argument('--nudge', action='store_true',
                   help='move every initial weight by one float32 ulp (towards +inf)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--out', required=True)
    args = p.parse_args()

    tf.set_random_seed(args.seed)
    model = official_model(args.official, args.batch_size)
    names = {v.name[:-2]: v for v in tf.global_variables()
             if v.name.startswith(('G_', 'D_')) and 'RMSProp' not in v.name}
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    images = np.load(f'{args.data_dir}/align_5p_64x64.npy')
    steps = sum(BURSTS.get(i, 1) + 1 for i in range(ITERS))
    if args.init:
        ref = np.load(args.init)
        for name, var in names.items():
            w = ref[f'init/{name}']
            var.load(np.nextafter(w, np.float32(np.inf)) if args.nudge else w, sess)
        rows = ref['rows']
    else:
        idxs1, idxs2 = read_sets(args.data_dir, 'Smiling')
        row_of = np.arange(len(images))        # tf_train.py's sampler, drawing row numbers
        batch1 = Sampler(row_of, idxs1, args.batch_size, args.seed)
        batch2 = Sampler(row_of, idxs2, args.batch_size, args.seed + 1)
        rows = np.array([[batch1.draw(), batch2.draw()] for _ in range(steps)], np.int64)
    record = {f'init/{k}': v for k, v in sess.run(names).items()}
    idxs1, idxs2 = read_sets(args.data_dir, 'Smiling')
    probe = {model.Ax: images[idxs1[:args.batch_size]].astype(np.float32),
             model.Be: images[idxs2[:args.batch_size]].astype(np.float32)}
    lr = 5e-5
    loss_D, loss_G, probes = [], [], []
    step = 0
    t0 = time.time()

    def feed():
        return {model.Ax: images[rows[step, 0]].astype(np.float32),
                model.Be: images[rows[step, 1]].astype(np.float32), model.g_lr: lr, model.d_lr: lr}

    for i in range(ITERS):                      # train.py: run, with the schedule above
        for _ in range(BURSTS.get(i, 1)):
            if args.clip_after:
                loss_D.append(sess.run([model.d_opt, model.loss_D], feed_dict=feed())[1])
                sess.run(model.clip_d)
            else:
                loss_D.append(sess.run([model.d_opt, model.loss_D, model.clip_d],
                                       feed_dict=feed())[1])
            step += 1
        loss_G.append(sess.run([model.g_opt, model.loss_G], feed_dict=feed())[1])
        step += 1
        probes.append(np.concatenate(sess.run([model.real_Ax, model.real_Be], feed_dict=probe)))
        if i + 1 == ITERS or phase_of(i + 1) != phase_of(i):
            values = sess.run(names)
            record.update({f'phase/{phase_of(i)}/{k}': v.ravel()[:SAMPLE]
                           for k, v in values.items()})
    record.update({f'final/{k}': v for k, v in sess.run(names).items()})
    np.savez(args.out, rows=rows, loss_D=np.array(loss_D), loss_G=np.array(loss_G),
             probe=np.array(probes), clip_after=args.clip_after, nudge=args.nudge, **record)
    print(f'{args.out}: {step} steps in {time.time() - t0:.0f} s, TF {tf.__version__}')


if __name__ == '__main__':
    main()
