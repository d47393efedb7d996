"""genegan.py eval: a classifier judges the edits (AttGAN/STGAN protocol), PSNR what is kept.
The official code has no eval; the classifier and its settings are this project's choice."""
import hashlib
import json
import os

import torch
import torch.nn.functional as F
from tqdm import tqdm

from align import refuse
from genegan import (Discriminator, Sampler, at_least, atomic_write, build_model, inference,
                     initialize, load_cache, load_checkpoint, load_dataset, load_model,
                     pick_device, require_same_config, save_checkpoint, to_device)

CLASSIFIER_FORMAT = 'genegan-pytorch-classifier/1'
CLASSIFIER_BATCH, CLASSIFIER_LR = 32, 2e-4   # Adam on the logistic loss
CLASSIFIER_BN_BATCHES = 20   # batches that give its BatchNorm layers their moving statistics
HELD_OUT_SHARE = 0.1         # without a partition: the last 10% of each set, as CelebA's
SHARED_FLAGS = ('attr', 'data', 'model', 'device', 'workers')


def add_flags(add):
    add('--num', type=at_least(1), default=100, help='held-out faces of each set')
    add('--clf_steps', type=at_least(1), default=300, help='steps to train a new classifier')
    add('--out', help='JSON file (default: eval_{attr}_{iter}.json beside the checkpoint)')


def held_out_rows(data):
    """The test partition (2) where the data set has one, else the last 10% of each set.
    Returns (held-out rows, training rows, what they are)."""
    if data.partition is not None:
        return data.rows('test'), data.rows('train'), 'test partition'
    held = {i for idxs in (data.idxs1, data.idxs2)
            for i in idxs[len(idxs) - int(len(idxs) * HELD_OUT_SHARE):]}
    return (held, set(data.idxs1 + data.idxs2) - held,
            f'the last {HELD_OUT_SHARE:.0%} of each set (no partition)')


def classifier(data_dir, attribute, images, rows_A, rows_B, fingerprint, steps, device):
    """The critic architecture (model.py: discriminator) as a logistic attribute classifier on
    real training faces at the model's size; logit > 0 means "has the attribute". Saved as
    DATA_DIR/classifier_{attr}_{size}x{size}.pt, reused until the images, labels or rows change."""
    size = images.shape[1]
    path = os.path.join(data_dir, f'classifier_{attribute}_{size}x{size}.pt')
    key = json.dumps([fingerprint, sorted(rows_A), sorted(rows_B)])
    key = hashlib.sha256(key.encode()).hexdigest()
    clf = Discriminator(size).to(device)
    if os.path.exists(path):
        saved = load_checkpoint(path, device, CLASSIFIER_FORMAT, ('attribute', 'key', 'model'))
        if saved['key'] == key:
            clf.load_state_dict(saved['model'])
            return clf.eval()
    torch.manual_seed(0)
    initialize(clf)
    opt = torch.optim.Adam(clf.parameters(), lr=CLASSIFIER_LR)
    half = CLASSIFIER_BATCH // 2
    samplers = [Sampler(images, rows_A, half, 0, device), Sampler(images, rows_B, half, 1, device)]
    target = torch.tensor([1.0] * half + [0.0] * half, device=device)
    for _ in tqdm(range(steps), desc=f'classifier {attribute}'):
        logits = clf(torch.cat([s.draw() for s in samplers]))[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # BatchNorm's moving statistics recomputed for the final weights, as a plain average
    batches = [torch.cat([s.draw() for s in samplers]) for _ in range(CLASSIFIER_BN_BATCHES)]
    torch.optim.swa_utils.update_bn(batches, clf)
    save_checkpoint([path], dict(format=CLASSIFIER_FORMAT, attribute=attribute, key=key,
                                 model=clf.state_dict()))
    return clf.eval()


def psnr(a, b):
    """Mean over the batch of each image's PSNR in dB, for images in [0, 255]."""
    mse = (a - b).square().mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return float((10 * torch.log10(255.0 ** 2 / mse)).mean())


def main(args):
    """eval: score a checkpoint on held-out faces; prints a table and writes JSON."""
    device = pick_device(args.device)
    path, ckpt, model = load_model(args, device)
    data = load_dataset(args.data_dir, args.attribute)
    args.attribute, args.data = data.attribute, data.identity()
    require_same_config(ckpt, path, args, 'data', 'attribute')
    held, train_rows, split = held_out_rows(data)
    images, bad, fingerprint = load_cache(data, args.num_workers, True, model.img_size)
    test_sets, train_sets = [], []
    for name, idxs in (('A', data.idxs1), ('B', data.idxs2)):
        test_sets.append([i for i in idxs if i in held and i not in bad])
        train_sets.append([i for i in idxs if i in train_rows and i not in bad])
        refuse(len(test_sets[-1]) < args.num,
               f'--num {args.num}: set {name} has only {len(test_sets[-1])} held-out '
               f'images ({split}); lower --num')
    clf = classifier(args.data_dir, args.attribute, images, *train_sets, fingerprint,
                     args.clf_steps, device)
    Ax, Be = (to_device(images[idxs[:args.num]], device) for idxs in test_sets)
    with inference(model):                      # as test.py: moving statistics
        t = build_model(model, Ax, Be)
        says_A = {k: (clf(v)[:, 0] > 0).float().mean().item()
                  for k, v in dict(Ax=Ax, Be=Be, Bx=t['Bx'], Ae=t['Ae']).items()}
    result = dict(
        checkpoint=path, iter=ckpt['iter'], attribute=args.attribute, held_out=split, num=args.num,
        classifier_accuracy=(says_A['Ax'] + 1 - says_A['Be']) / 2,
        transfer=says_A['Bx'], transfer_baseline=says_A['Be'],
        removal=1 - says_A['Ae'], removal_baseline=1 - says_A['Ax'],
        psnr_Ax2=psnr(t['Ax2'], Ax), psnr_Be2=psnr(t['Be2'], Be),
        psnr_Bx_Be=psnr(t['Bx'], Be), psnr_Ae_Ax=psnr(t['Ae'], Ax))
    for key, value in result.items():
        print(f'{key:20s} {value:.3f}' if isinstance(value, float) else f'{key:20s} {value}')
    out = args.out or os.path.join(os.path.dirname(path),
                                   f'eval_{args.attribute}_{ckpt["iter"]:06d}.json')
    atomic_write([out], json.dumps(result, indent=1).encode())
    print(f'wrote {out}')
    return result
