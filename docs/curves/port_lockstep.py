"""The port replaying tf_lockstep.py's records in lockstep: the same initial weights (through
load_tf_variables), the same batches and schedule, through the public API (Trainer), clip-first,
or with clip_after_update where the record clipped in a run of its own. Prints a markdown table
per phase: how far the port lies from the official graph, beside how far the official graph lies
from a second run of itself. Run in the project's venv, from the repository root:

    python docs/curves/port_lockstep.py --data_dir toy2000 --tf a.npz b.npz [e.npz ...] \
        [--tf_after c.npz d.npz ...]

The port replays the first record of each list; every other record of the list is the official
graph run again from the same weights and batches, compared with the first as the port is.

Per phase (the D steps and G steps of its iterations): the largest |loss_D difference| over its D
steps; the largest relative G-loss difference |a - b| / |b| over its G steps; the critics' outputs
on the probe batch after each of its iterations, as the largest |difference| over the largest
|output|; and the weights at the phase's end, over the first 4096 values of every variable (every
value, for the final weights), as the largest |difference| over the variable's largest |value|,
the largest over G's variables and over D's.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
import genegan as G  # noqa: E402
from lockstep_schedule import BURSTS, ITERS, PHASES, SAMPLE, phase_of  # noqa: E402


def replay(record, images, data_dir):
    """The port's record of the run that RECORD describes, in RECORD's keys."""
    torch.manual_seed(0)
    model = G.GeneGAN()
    model.load_tf_variables({k[5:]: v for k, v in record.items() if k.startswith('init/')})
    model = G.prepare_for_training(model, torch.device('cpu'))
    trainer = G.Trainer(model, clip_after_update=bool(record['clip_after']))
    cpu = torch.device('cpu')
    batch = lambda rows: G.to_device(images[rows], cpu)    # noqa: E731
    idxs1, idxs2, _ = G.read_attributes(data_dir, 'Smiling')
    probe = batch(idxs1[:8]), batch(idxs2[:8])
    rows, out = record['rows'], {'loss_D': [], 'loss_G': [], 'probe': []}
    step = 0
    for i in range(ITERS):
        for _ in range(BURSTS.get(i, 1)):
            out['loss_D'].append(float(trainer.d_step(batch(rows[step, 0]), batch(rows[step, 1]))
                                       ['loss_D']))
            step += 1
        out['loss_G'].append(float(trainer.g_step(batch(rows[step, 0]), batch(rows[step, 1]))
                                   ['loss_G']))
        step += 1
        with torch.no_grad(), G.batch_stats_only(model):
            out['probe'].append(torch.cat([model.D_Ax(probe[0]), model.D_Be(probe[1])]).numpy())
        if i + 1 == ITERS or phase_of(i + 1) != phase_of(i):
            out.update({f'phase/{phase_of(i)}/{k}': v.ravel()[:SAMPLE]
                        for k, v in model.tf_variables().items()})
    out.update({f'final/{k}': v for k, v in model.tf_variables().items()})
    return {k: np.array(v) if isinstance(v, list) else v for k, v in out.items()}


def weights_apart(a, b, prefix):
    """max |a - b| / max |b| of each variable (the parity tests' relative error), the largest
    over G's variables and over D's."""
    worst = {'G': 0.0, 'D': 0.0}
    for k in b:
        if k.startswith(prefix):
            net = k[len(prefix)]
            scale = np.abs(b[k]).max() or 1.0             # a variable still all zeros: absolute
            worst[net] = max(worst[net], float(np.abs(a[k] - b[k]).max() / scale))
    return worst


def rows(a, b):
    """One table row per phase: a against b."""
    d_phase = np.array([phase_of(i) for i in range(ITERS) for _ in range(BURSTS.get(i, 1))])
    g_phase = np.array([phase_of(i) for i in range(ITERS)])
    out = []
    for k, name in enumerate(PHASES):
        dd = np.abs(a['loss_D'] - b['loss_D'])[d_phase == k].max()
        dg = (np.abs(a['loss_G'] - b['loss_G']) / np.abs(b['loss_G']))[g_phase == k].max()
        pr = max(np.abs(pa - pb).max() / np.abs(pb).max()
                 for pa, pb, g in zip(a['probe'], b['probe'], g_phase) if g == k)
        w = weights_apart(a, b, f'phase/{k}/')
        out.append(f'{name} | {dd:.2g} | {dg:.2g} | {pr:.2g} | {w["G"]:.2g} | {w["D"]:.2g}')
    w = weights_apart(a, b, 'final/')
    out.append(f'final weights | | | | {w["G"]:.2g} | {w["D"]:.2g}')
    return out


def table(title, pairs):
    print(f'\n{title}\n')
    print('phase | pair | max abs loss_D diff | max rel loss_G diff | probe critic outputs '
          '(max diff / max abs) | G weights (max diff / max abs) | D weights (max diff / max abs)')
    print('--- | --- | --- | --- | --- | --- | ---')
    tables = [(label, rows(a, b)) for label, a, b in pairs]
    for k in range(len(PHASES) + 1):
        for label, lines in tables:
            name, rest = lines[k].split(' | ', 1)
            print(f'{name} | {label} | {rest}')


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--data_dir', required=True, help='the toy set the records were made on')
    p.add_argument('--tf', nargs='+', required=True, help='records of the combined run')
    p.add_argument('--tf_after', nargs='+', help='records that clip in a run of their own')
    args = p.parse_args()
    images = np.load(os.path.join(args.data_dir, 'align_5p_64x64.npy'))
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    for key, title in (('tf', "train.py's combined run; the port clips first"),
                       ('tf_after', 'the clip in a run of its own; the port with '
                                    'clip_after_update')):
        if getattr(args, key):
            a, *others = (dict(np.load(f)) for f in getattr(args, key))
            table(title, [('port vs official 1', replay(a, images, args.data_dir), a)] +
                  [(f'official {k + 2}{" (initial weights 1 ulp up)" if b.get("nudge") else ""}'
                    f' vs official 1', b, a) for k, b in enumerate(others)])
