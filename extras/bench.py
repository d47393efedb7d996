"""genegan.py bench: seconds per training iteration, sampler and align throughput, on synthetic
data."""
import timeit

import cv2
import numpy as np
import torch

from align import align_face_5p
from genegan import (BATCH_SIZE, GeneGAN, Sampler, Trainer, at_least, pick_device,
                     prepare_for_training)

SHARED_FLAGS = ('device', 'speed')


def add_flags(add):
    add('--batch_size', type=at_least(1), default=BATCH_SIZE, help='images per set')
    add('--iters', type=at_least(1), default=3, help='timed iterations')


def seconds(work, n):
    """Median seconds per call of work() over n calls (timeit's: garbage collection off)."""
    return float(np.median(timeit.repeat(work, repeat=n, number=1)))


def main(args):
    from torch.utils.flop_counter import FlopCounterMode
    device = pick_device(args.device, args.tf32, bf16=args.bf16)
    torch.manual_seed(0)
    trainer = Trainer(prepare_for_training(GeneGAN(img_size=args.img_size), device, args.compile),
                      bf16=args.bf16)
    bs, size = args.batch_size, args.img_size
    images = np.random.default_rng(0).integers(0, 256, (8 * bs, size, size, 3), np.uint8)
    sampler_A = Sampler(images, range(0, 4 * bs), bs, 0, device)
    sampler_B = Sampler(images, range(4 * bs, 8 * bs), bs, 1, device)

    def sync():                              # CPU work is done when its call returns
        if device.type != 'cpu':
            getattr(torch, device.type).synchronize(*[device] if device.type == 'cuda' else [])

    def iteration():                         # train.py's loop body with d_num = 1
        trainer.d_step(sampler_A.draw(), sampler_B.draw())
        trainer.g_step(sampler_A.draw(), sampler_B.draw())
        sync()

    with FlopCounterMode(display=False) as counter:
        iteration()                          # also the warm-up
    sec = seconds(iteration, args.iters)
    sampler_rate = bs / seconds(lambda: (sampler_A.draw(), sync()), 50)
    face = np.random.default_rng(0).integers(0, 256, (687, 409, 3), np.uint8)
    landmarks = [165, 184, 244, 176, 196, 249, 194, 271, 266, 260]
    align_rate = 1 / seconds(lambda: cv2.imencode('.jpg', align_face_5p(face, landmarks)), 50)
    print(f'device: {device} ({torch.get_num_threads()} CPU threads), batch {bs}, '
          f'{args.iters} timed iterations after 1 warm-up, {size}x{size}, '
          f'{"bfloat16" if args.bf16 else "float32"}')
    print(f'train iteration (D step + clip + G step): {sec:.3f} s (median)')
    print(f'sampler ({size}x{size} cache -> device): {sampler_rate:.0f} images/s')
    print(f'align.py per-image work (warp + JPEG encode), one process: {align_rate:.0f} images/s')
    print(f'model FLOP per iteration: {counter.get_total_flops() / 1e12:.3f} TFLOP')
    print(f'achieved: {counter.get_total_flops() / sec / 1e9:.1f} GFLOP/s')

