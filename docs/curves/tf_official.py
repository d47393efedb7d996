"""The shims that the official TF1 code (github.com/Prinsphield/GeneGAN) needs under TF 2, for
the scripts of this folder: tensorflow.compat.v1 as `tensorflow`, Keras 2 for tf.layers, and a
stand-in `dataset` module (model.py imports dataset.config; the official dataset.py needs
datasets/celebA and scipy.misc)."""
import os
import sys
import types

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')   # tf.layers needs tf-keras (Keras 2)
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()
sys.modules['tensorflow'] = tf          # model.py does `import tensorflow as tf`


def official_model(official, batch_size, max_iter=100000):
    """model.py's Model(is_train=True) for batch_size x 64 x 64 x 3, with dataset.py's config."""
    config = types.SimpleNamespace(nhwc=[batch_size, 64, 64, 3], max_iter=max_iter,
                                   weight_decay=5e-5, second_ratio=0.25)
    sys.modules['dataset'] = types.SimpleNamespace(config=config, Dataset=None)
    sys.path.insert(0, official)
    import model
    return model.Model(is_train=True)
