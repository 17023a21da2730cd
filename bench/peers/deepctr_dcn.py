"""Peer run: DeepCTR 0.9.4's `DCN` (cross_parameterization='matrix', i.e. DCN-M / DCN-V2, parallel, plus DeepCTR's
linear part) on TensorFlow 2.21 with tf-keras (TF_USE_LEGACY_KERAS=1), trained with Keras fit and early stopping
on validation logloss. Runs inside .bench_venvs/deepctr (made by bench/bench_peers.py); reads the encoded arrays
that bench_peers.py exported from rtb_dcn's FeatureSpec; prints one JSON line with test AUC/logloss and rows/s."""
import os
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import argparse, json, sys, time
import numpy as np
import tensorflow as tf

def auc(y, p) -> float:
    "ROC AUC (Mann-Whitney, ties averaged) in numpy: this venv has no scikit-learn."
    _, inv, counts = np.unique(p, return_inverse=True, return_counts=True)
    r = (np.cumsum(counts) - (counts - 1) / 2)[inv]
    n1 = float(y.sum()); n0 = len(y) - n1
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data-dir', required=True)
    ap.add_argument('--embedding-dim', type=int, default=16)
    ap.add_argument('--cross-layers', type=int, default=3)
    ap.add_argument('--hidden-units', default='256,128')
    ap.add_argument('--dropout', type=float, default=0.0)
    ap.add_argument('--embedding-l2', type=float, default=1e-5)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--batch-size', type=int, default=1024)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--patience', type=int, default=1)
    ap.add_argument('--seed', type=int, default=42)
    a = ap.parse_args()
    from deepctr.models import DCN
    from deepctr.feature_column import SparseFeat, DenseFeat
    import deepctr
    tf.keras.utils.set_random_seed(a.seed)
    meta = json.load(open(os.path.join(a.data_dir, 'meta.json')))
    cols = [SparseFeat(n, vocabulary_size=int(c), embedding_dim=a.embedding_dim) for n, c in zip(meta['cat'], meta['cardinalities'])]
    cols += [DenseFeat(n, 1) for n in meta['dense']]
    def load(part):
        ids, dense, y = (np.load(os.path.join(a.data_dir, f'{part}_{k}.npy')) for k in ('cat_ids', 'dense', 'label'))
        x = {n: ids[:, j] for j, n in enumerate(meta['cat'])}
        x.update({n: dense[:, j] for j, n in enumerate(meta['dense'])})
        return x, y.astype(np.float32)
    (xt, yt), (xv, yv), (xs, ys) = load('train'), load('valid'), load('test')
    hidden = tuple(int(u) for u in a.hidden_units.split(','))
    model = DCN(cols, cols, cross_num=a.cross_layers, cross_parameterization='matrix', dnn_hidden_units=hidden,
                l2_reg_embedding=a.embedding_l2, dnn_dropout=a.dropout, seed=a.seed, task='binary')
    model.compile(tf.keras.optimizers.Adam(a.lr), 'binary_crossentropy',
                  metrics=[tf.keras.metrics.BinaryCrossentropy(name='logloss')])
    # early stopping on validation logloss (the metric, without the L2 penalty that val_loss carries)
    es = tf.keras.callbacks.EarlyStopping(monitor='val_logloss', mode='min', patience=a.patience, restore_best_weights=True)
    t = time.perf_counter()
    h = model.fit(xt, yt, batch_size=a.batch_size, epochs=a.epochs, validation_data=(xv, yv), callbacks=[es], verbose=2, shuffle=True)
    fit_s = time.perf_counter() - t
    p = model.predict(xs, batch_size=8192, verbose=0).ravel().astype(np.float64)
    q = np.clip(p, 1e-7, 1 - 1e-7)
    ll = float(-np.mean(ys * np.log(q) + (1 - ys) * np.log(1 - q)))
    epochs = len(h.history['loss'])
    print(json.dumps(dict(peer='deepctr', model=f'DeepCTR {deepctr.__version__} DCN (matrix cross)', test_logloss=ll,
                          test_auc=auc(ys, p), epochs=epochs, train_rows=len(yt), fit_seconds=fit_s,
                          rows_per_s=len(yt) * epochs / fit_s, params=int(model.count_params()),
                          val_logloss=[float(v) for v in h.history['val_logloss']], tensorflow=tf.__version__,
                          settings=vars(a))), flush=True)

if __name__ == '__main__':
    main()
