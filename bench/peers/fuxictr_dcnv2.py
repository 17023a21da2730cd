"""Peer run: a parallel DCNv2 composed from FuxiCTR 2.3.10's building blocks (FeatureEmbedding, CrossNetV2,
MLP_Block) on FuxiCTR's BaseModel (its training loop, early stopping, checkpointing), PyTorch on the CPU.
Runs inside .bench_venvs/fuxictr (made by bench/bench_peers.py); reads the encoded arrays that bench_peers.py
exported from rtb_dcn's FeatureSpec; prints one JSON line with test AUC/logloss and training rows/s."""
import argparse, json, logging, math, os, sys, tempfile, time
import numpy as np
import torch
from torch import nn
from fuxictr.features import FeatureMap
from fuxictr.pytorch.models import BaseModel
from fuxictr.pytorch.layers import FeatureEmbedding, CrossNetV2, MLP_Block

class ParallelDCNv2(BaseModel):
    "x0 = [field embeddings]; logit = Linear([CrossNetV2(x0), MLP(x0)]) (DCN-V2, parallel structure)."
    def __init__(self, feature_map, embedding_dim=16, num_cross_layers=3, hidden_units=(256, 128), dropout=0.0,
                 learning_rate=1e-3, embedding_regularizer=None, net_regularizer=None, patience=1, **kwargs):
        super().__init__(feature_map, model_id='ParallelDCNv2', gpu=-1, monitor='logloss', monitor_mode='min',
                         early_stop_patience=patience, embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        d = feature_map.sum_emb_out_dim()
        self.crossnet = CrossNetV2(d, num_cross_layers)
        self.dnn = MLP_Block(input_dim=d, output_dim=None, hidden_units=list(hidden_units), hidden_activations='ReLU',
                             output_activation=None, dropout_rates=dropout, batch_norm=False)
        self.fc = nn.Linear(d + hidden_units[-1], 1)
        self.compile('adam', 'binary_crossentropy', learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        x0 = self.embedding_layer(self.get_inputs(inputs), flatten_emb=True)
        h = torch.cat([self.crossnet(x0), self.dnn(x0)], dim=-1)
        return {'y_pred': self.output_activation(self.fc(h))}

class Batches:
    "Mini-batches as FuxiCTR's loaders yield them: a dict of 1-d tensors per feature plus the label."
    def __init__(self, d, part, names, batch_size, shuffle, seed=0):
        ids, dense, y = (np.load(os.path.join(d, f'{part}_{k}.npy')) for k in ('cat_ids', 'dense', 'label'))
        self.cols = {n: torch.from_numpy(np.ascontiguousarray(ids[:, j])) for j, n in enumerate(names['cat'])}
        self.cols.update({n: torch.from_numpy(np.ascontiguousarray(dense[:, j])) for j, n in enumerate(names['dense'])})
        self.cols['label'] = torch.from_numpy(y.astype(np.float32))
        self.n, self.bs, self.shuffle = len(y), batch_size, shuffle
        self.g = torch.Generator().manual_seed(seed)
    def __len__(self): return math.ceil(self.n / self.bs)
    def __iter__(self):
        order = torch.randperm(self.n, generator=self.g) if self.shuffle else None
        for i in range(0, self.n, self.bs):
            idx = order[i:i + self.bs] if order is not None else slice(i, i + self.bs)
            yield {k: v[idx] for k, v in self.cols.items()}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data-dir', required=True)
    ap.add_argument('--embedding-dim', type=int, default=16)
    ap.add_argument('--cross-layers', type=int, default=3)
    ap.add_argument('--hidden-units', default='256,128')
    ap.add_argument('--dropout', type=float, default=0.0)
    ap.add_argument('--embedding-l2', type=float, default=0.0)
    ap.add_argument('--net-l2', type=float, default=0.0)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--batch-size', type=int, default=1024)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--patience', type=int, default=1)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='fuxictr: %(message)s')
    torch.manual_seed(a.seed); np.random.seed(a.seed); torch.set_num_threads(a.threads)
    meta = json.load(open(os.path.join(a.data_dir, 'meta.json')))
    root = tempfile.mkdtemp(prefix='fuxictr_')
    fm = FeatureMap('rtb_bench', root)
    for n, card in zip(meta['cat'], meta['cardinalities']): fm.features[n] = {'type': 'categorical', 'source': '', 'vocab_size': int(card)}
    for n in meta['dense']: fm.features[n] = {'type': 'numeric', 'source': ''}
    fm.labels = ['label']; fm.num_fields = fm.get_num_fields(); fm.default_emb_dim = a.embedding_dim; fm.set_column_index()
    hidden = [int(u) for u in a.hidden_units.split(',')]
    model = ParallelDCNv2(fm, a.embedding_dim, a.cross_layers, hidden, a.dropout, a.lr,
                          embedding_regularizer=a.embedding_l2 or None, net_regularizer=a.net_l2 or None, patience=a.patience,
                          verbose=0, model_root=root, metrics=['logloss', 'AUC'])
    train = Batches(a.data_dir, 'train', meta, a.batch_size, True, a.seed)
    valid = Batches(a.data_dir, 'valid', meta, 8192, False)
    test = Batches(a.data_dir, 'test', meta, 8192, False)
    os.makedirs(os.path.dirname(model.checkpoint), exist_ok=True)
    epochs = [0]
    orig = model.train_epoch
    def counted(gen): epochs[0] += 1; return orig(gen)
    model.train_epoch = counted
    t = time.perf_counter()
    model.fit(train, epochs=a.epochs, validation_data=valid)
    fit_s = time.perf_counter() - t
    logs = model.evaluate(test, metrics=['logloss', 'AUC'])
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps(dict(peer='fuxictr', model='ParallelDCNv2 (FuxiCTR 2.3.10 blocks)', test_logloss=float(logs['logloss']),
                          test_auc=float(logs['AUC']), epochs=epochs[0], train_rows=train.n, fit_seconds=fit_s,
                          rows_per_s=train.n * epochs[0] / fit_s, params=int(n_params), threads=a.threads,
                          torch=torch.__version__, settings=vars(a))), flush=True)

if __name__ == '__main__':
    main()
