"""The official graph's training curves against the port's, from the JSONL logs in this folder
(tf_seed*.jsonl: tf_train.py; port_seed*.jsonl, port_after_seed*.jsonl and port_bf16_seed*.jsonl:
genegan.py train's logs/metrics.jsonl, default, --clip_after_update and --bf16). Writes
comparison.md (per loss and 100-iteration window: the mean over seeds on each side, the range
across seeds, and whether each side's mean lies inside the official seeds' range, and the bf16
side's inside the float32 port's) and curves.png. Needs matplotlib.

    python docs/curves/compare.py
"""
import glob
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = ('e', 'cycle_Ax', 'cycle_Be', 'Bx', 'Ae', 'parallelogram', 'loss_G_nodecay',
        'loss_G_decay', 'loss_G', 'Ax_Bx', 'Be_Ae', 'loss_D')
PLOTTED = ('e', 'cycle_Ax', 'parallelogram', 'loss_D')
SHORT = PLOTTED + ('loss_G',)       # the short table, for README.md
SIDES = {'official': 'tf_seed', 'port': 'port_seed', 'port, clip after update': 'port_after_seed',
         'port, bf16': 'port_bf16_seed'}
WINDOW = 100


def read_runs(prefix):
    """{seed: {key: {iteration: value}}} of the complete runs logged under PREFIX*.jsonl."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(HERE, prefix + '*.jsonl'))):
        seed = int(os.path.basename(path)[len(prefix):-len('.jsonl')])
        with open(path) as f:
            records = [json.loads(line) for line in f]
        runs[seed] = {k: {r['iter']: r[k] for r in records} for k in KEYS}
    return runs


def complete(runs):
    """The iterations that every run of a side covers in whole 100-iteration windows (a window
    is whole when its last logged iteration, 10 before its end, is there)."""
    return (min(max(run['e']) for run in runs.values()) + 10) // WINDOW * WINDOW


def windows(runs, key, last):
    """Per window [w, w + 100): the seeds' window means, as an array (seeds x windows)."""
    return np.array([[np.mean([v for i, v in run[key].items() if w <= i < w + WINDOW])
                      for w in range(0, last, WINDOW)] for run in runs.values()])


def main():
    sides = {name: read_runs(prefix) for name, prefix in SIDES.items()}
    sides = {name: runs for name, runs in sides.items() if runs}
    last = min(complete(sides['official']), complete(sides['port']))
    lines = ['# Training curves: the official graph and the port', '',
             'Runs: ' + '; '.join(f'{name}: seeds {sorted(runs)}, iterations 0-{complete(runs) - 1}'
                                  for name, runs in sides.items())
             + '. Window means of the logged losses (every 10 iterations). Each cell: mean over'
             ' seeds [min, max across seeds]; "in" where that side\'s mean lies inside the'
             ' official seeds\' range, "OUT" where not.', '']
    others = [name for name in sides if name != 'official']
    header = ['loss', 'window'] + list(sides) + [f'{name} in official range' for name in others]
    lines += ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    summary, overlap, in_port, short = {}, {}, {}, []
    for key in KEYS:
        per_side = {name: windows(runs, key, min(last, complete(runs)))
                    for name, runs in sides.items()}
        for w in range(last // WINDOW):
            ref = per_side['official'][:, w]
            cells, marks = [], []
            for name, values in per_side.items():
                if w >= values.shape[1]:
                    cells.append('-')
                    marks.append('-')
                    continue
                v = values[:, w]
                cells.append(f'{v.mean():.4g} [{v.min():.4g}, {v.max():.4g}]')
                inside = ref.min() <= v.mean() <= ref.max()
                summary.setdefault((name, key), []).append(inside)
                overlap.setdefault((name, key), []).append(v.min() <= ref.max()
                                                           and ref.min() <= v.max())
                port = per_side['port'][:, w]
                in_port.setdefault((name, key), []).append(port.min() <= v.mean() <= port.max())
                marks.append('in' if inside else 'OUT')
            lines.append(f'| {key} | {w * WINDOW}-{w * WINDOW + WINDOW - 1} | '
                         + ' | '.join(cells + marks[1:]) + ' |')
        if key in SHORT:
            official, port = per_side['official'], per_side['port']
            lo, hi, mean = official.min(0), official.max(0), port.mean(0)
            short.append(f'| {key} | ' + ' | '.join(
                f'{official[:, w].mean():.3g} [{lo[w]:.3g}, {hi[w]:.3g}] / {mean[w]:.3g} '
                f'{"in" if lo[w] <= mean[w] <= hi[w] else "OUT"}'
                for w in range(last // WINDOW)) + ' |')
    for name in others:
        lines += ['', f'Windows where the mean of "{name}" lies inside the official range, per '
                  'loss: ' + ', '.join(f'{k} {sum(summary[name, k])}/{len(summary[name, k])}'
                                       for k in KEYS if (name, k) in summary) + '.',
                  '', f'Windows where the seed range of "{name}" overlaps the official one, per '
                  'loss: ' + ', '.join(f'{k} {sum(overlap[name, k])}/{len(overlap[name, k])}'
                                       for k in KEYS if (name, k) in overlap) + '.']
        if name != 'port':
            lines += ['', f'Windows where the mean of "{name}" lies inside the range of the '
                      'float32 port\'s seeds, per loss: ' + ', '.join(
                          f'{k} {sum(in_port[name, k])}/{len(in_port[name, k])}'
                          for k in KEYS if (name, k) in in_port) + '.']
    head = ['loss'] + [f'{w}-{w + WINDOW - 1}' for w in range(0, last, WINDOW)]
    lines += ['', '## Short form', '', 'Each cell: official mean [min, max across seeds] / port '
              'mean, "in" or "OUT" of the official range.', '',
              '| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)] + short
    with open(os.path.join(HERE, 'comparison.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(13, 3.2), dpi=80)
    colours = {'official': 'tab:blue', 'port': 'tab:orange', 'port, clip after update': 'tab:green',
               'port, bf16': 'tab:red'}
    for ax, key in zip(axes, PLOTTED):
        for name, runs in sides.items():
            iters = sorted(set.intersection(*(set(run[key]) for run in runs.values())))
            values = np.array([[run[key][i] for i in iters] for run in runs.values()])
            ax.fill_between(iters, values.min(0), values.max(0), color=colours[name], alpha=0.2,
                            linewidth=0)
            ax.plot(iters, values.mean(0), color=colours[name], linewidth=1,
                    label=f'{name} ({len(runs)} seeds)')
        ax.set_title(key)
        ax.set_xlabel('iteration')
        ax.axvline(500, color='grey', linewidth=0.5, linestyle=':')
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, 'curves.png'))
    print('wrote', os.path.join(HERE, 'comparison.md'), os.path.join(HERE, 'curves.png'))


if __name__ == '__main__':
    main()
