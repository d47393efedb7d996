"""The schedule that tf_lockstep.py records and port_lockstep.py replays, in one place: train.py's
loop shortened to 16 iterations, critic bursts of 100 D steps at iterations 0 and 10, 1 D step
at every other iteration, each iteration ending with 1 G step (214 D and 16 G steps)."""
BURSTS = {0: 100, 10: 100}   # iteration: D steps
ITERS = 16
PHASES = ('first burst', 'between', 'second burst', 'after')
SAMPLE = 4096                # values of each variable recorded at the end of each phase


def phase_of(i):
    """The phase of iteration i (its D steps and its G step)."""
    return PHASES.index('first burst' if i == 0 else 'second burst' if i == 10 else
                        'between' if i < 10 else 'after')
