"""rtb_dcn's side of the peer comparison: the experiment's model (rtb_dcn.models.model_from_config) trained with
its optimiser (Adam as rtb_dcn.train runs it, the fused kernel rtb_dcn.layers.FusedAdam), batch size and patience
on the same exported arrays as the peers (Keras fit on the in-memory arrays, early stopping on validation logloss,
best weights restored); prints one JSON line like the peer runners."""
import argparse, json, os, sys, time
from pathlib import Path
import numpy as np

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data-dir', required=True)
    ap.add_argument('--config', required=True)
    ap.add_argument('--experiment', default='DCN_default')
    a = ap.parse_args()
    import keras, tensorflow as tf
    from rtb_dcn.train import load_experiment, ctr_metrics
    from rtb_dcn.models import model_from_config
    from rtb_dcn.layers import FusedAdam
    cfg = load_experiment(a.config, a.experiment)
    keras.utils.set_random_seed(cfg.seed)
    meta = json.load(open(os.path.join(a.data_dir, 'meta.json')))
    def load(part): return tuple(np.load(os.path.join(a.data_dir, f'{part}_{k}.npy')) for k in ('cat_ids', 'dense', 'label'))
    (it, dt, yt), (iv, dv, yv), (is_, ds, ys) = load('train'), load('valid'), load('test')
    model = model_from_config(cfg.model, meta['cardinalities'], len(meta['dense']))
    model.compile(optimizer=FusedAdam(cfg.learning_rate), loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryCrossentropy(name='logloss')])
    # Keras fit on the in-memory arrays with shuffle=True (a fresh permutation of the rows each epoch), exactly as the
    # DeepCTR runner feeds tf-keras. (An element-wise tf.data .shuffle(len(train)) buffer halved the step rate here:
    # its threads compete with training for the 2 cores.)
    yt2, yv2 = yt.astype(np.float32).reshape(-1, 1), yv.astype(np.float32).reshape(-1, 1)
    es = keras.callbacks.EarlyStopping(monitor='val_logloss', mode='min', patience=cfg.patience, restore_best_weights=True)
    class Log(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            print(f"rtb_dcn arrays: epoch {e + 1} loss {logs['loss']:.5f} val_logloss {logs['val_logloss']:.5f}", file=sys.stderr, flush=True)
    t = time.perf_counter()
    h = model.fit((it, dt), yt2, batch_size=cfg.batch_size, shuffle=True, validation_data=((iv, dv), yv2), validation_batch_size=8192,
                  epochs=cfg.epochs, callbacks=[es, Log()], verbose=0)
    fit_s = time.perf_counter() - t
    p = model.predict((is_, ds), batch_size=8192, verbose=0).ravel()
    m = ctr_metrics(ys, p)
    epochs = len(h.history['loss'])
    print(json.dumps(dict(peer='rtb_dcn', model=f'rtb_dcn {model.name} ({a.experiment})', test_logloss=m['logloss'], test_auc=m['auc'],
                          epochs=epochs, train_rows=len(yt), fit_seconds=fit_s, rows_per_s=len(yt) * epochs / fit_s,
                          params=int(model.count_params()), val_logloss=[float(v) for v in h.history['val_logloss']],
                          tensorflow=tf.__version__, keras=keras.__version__, settings=cfg.model_dump(mode='json'))), flush=True)

if __name__ == '__main__':
    main()
