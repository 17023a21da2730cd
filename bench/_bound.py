"""The specified-model bound: a logistic regression over exactly the terms that rtb_dcn.synth.CriteoSynth.logit
plants (one-hot of every field value, one-hot of every planted cross's value tuple, the dense terms and the
dense x categorical term as the generator defines them), fitted on the training rows (scipy sparse + sklearn)."""
import numpy as np, pandas as pd, scipy.sparse as sp
from rtb_dcn.synth import CriteoSynth, CRITEO_CAT, CRITEO_DENSE, _joint_codes as _codes   # joint factorisation of fields over frames

# the planted crosses of CriteoSynth.logit (field names, 1-based like the file's columns)
CROSSES = (('C1', 'C2'), ('C14', 'C23'), ('C6', 'C17'), ('C5', 'C8', 'C17'))
DENSE_X_CAT = ('I5', 'C11')   # a['i5c11'] * t5 * g11[C11], 0 when I5 is missing

def design(frames: list[pd.DataFrame], shape: CriteoSynth, crosses: bool = True) -> tuple[list[sp.csr_matrix], list[str]]:
    "One sparse design matrix per frame, same columns; the group name of each column block (crosses=False: first order only)."
    blocks = [[] for _ in frames]; groups = []
    # dense first-order: beta_j * t_j when present, beta_miss_j when missing
    t, miss = [], []
    for df in frames:
        x = df[CRITEO_DENSE].to_numpy(np.float64)
        m = np.isnan(x)
        tj = (np.log1p(np.nan_to_num(x, nan=0.0).clip(0)) - shape.mu) / shape.sd
        t.append(np.where(m, 0.0, tj)); miss.append(m.astype(np.float64))
    for b, tj, mj in zip(blocks, t, miss): b.append(sp.csr_matrix(np.hstack([tj, mj])))
    groups.append(f'dense:{2 * len(CRITEO_DENSE)}')
    def onehot(cols, values=None):
        codes, k = _codes(frames, cols)
        for j, (b, c) in enumerate(zip(blocks, codes)):
            v = np.ones(len(c)) if values is None else values[j]
            b.append(sp.csr_matrix((v, (np.arange(len(c)), c)), shape=(len(c), k)))
        groups.append(f"{'x'.join(cols)}:{k}")
    for c in CRITEO_CAT: onehot((c,))
    if crosses:
        for cr in CROSSES: onehot(cr)
        i5 = CRITEO_DENSE.index(DENSE_X_CAT[0])
        onehot((DENSE_X_CAT[1],), values=[tj[:, i5] for tj in t])
    return [sp.hstack(b, format='csr') for b in blocks], groups

def _fit_one(C, X_train, y_train, X_valid, y_valid):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    lr = LogisticRegression(C=C, solver='liblinear', intercept_scaling=10.0, tol=1e-4, max_iter=200).fit(X_train, y_train)
    return lr, float(log_loss(y_valid, lr.predict_proba(X_valid)[:, 1]))

def fit_bound(X_train, y_train, X_valid, y_valid, Cs=(0.1, 0.3, 1.0), log=print, what='bound', n_jobs=3):
    "L2 logistic regressions (liblinear) for each inverse strength C, in parallel processes; the one with the best validation logloss."
    from joblib import Parallel, delayed
    log(f"  {what}: fitting C in {list(Cs)} ({X_train.shape[0]:,} rows x {X_train.shape[1]:,} columns)")
    fits = Parallel(n_jobs=min(n_jobs, len(Cs)))(delayed(_fit_one)(C, X_train, y_train, X_valid, y_valid) for C in Cs)
    tried = []
    for C, (lr, ll) in zip(Cs, fits):
        tried.append(dict(C=C, valid_logloss=ll, iterations=int(lr.n_iter_[0])))
        log(f"  {what}: C={C:g} valid logloss {ll:.5f} ({int(lr.n_iter_[0])} iterations)")
    return min(fits, key=lambda f: f[1])[0], tried
