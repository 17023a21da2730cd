"""Shared helpers of the benchmarks: the model benchmarks' data file (bench_models, bench_peers, bench_inference,
bench_train_memory), the small run the serving benchmarks fall back on (bench_router, bench_replay), and JSON output."""
import json, os, platform, shlex, sys, time
from pathlib import Path
import numpy as np
from rtb_dcn.config import repo_root

ROOT = repo_root()
DATA = ROOT / 'data' / 'bench' / 'criteo_5000000_s7.txt'   # `rtb-dcn synth --rows 5000000 --seed 7 --out ...`
SEED_DATA = 7                 # the synthetic file's generator seed
NROWS = 600_000               # rows of DATA used by the quality benchmarks (480k train / 60k valid / 60k test)
CONFIG = ROOT / 'configs' / 'experiments' / 'dcn_criteo.yaml'
RUNS = Path(os.environ.get('RTB_BENCH_RUNS', ROOT / 'data' / 'bench' / 'runs'))      # run folders of the benchmarks
OUT = Path(os.environ.get('RTB_BENCH_OUT', ROOT / 'report' / 'benchmarks'))         # where the results go

def ensure_data(path: Path = DATA, rows: int = 5_000_000, seed: int = SEED_DATA) -> Path:
    "The benchmark file; written with rtb_dcn.synth.write_synth when it is missing (about a minute)."
    if not path.exists():
        from rtb_dcn.synth import write_synth
        path.parent.mkdir(parents=True, exist_ok=True)
        print(write_synth(path, 'criteo', rows=rows, seed=seed), file=sys.stderr)
    return path

def _train_small_ipinyou_run(folder: Path, parity_rows: int) -> None:
    from rtb_dcn.data import read_dataset
    from rtb_dcn.run import train_frame
    from rtb_dcn.synth import write_synth
    from rtb_dcn.train import load_experiment
    if not (folder / 'ipy.txt').exists(): write_synth(folder / 'ipy.txt', 'ipinyou', rows=20000, seed=5, progress=False)
    cfg = load_experiment(CONFIG, 'DCN_test', format='ipinyou', epochs=1)
    train_frame(read_dataset(folder / 'ipy.txt', 'ipinyou'), cfg, folder / 'ipy', parity_rows=parity_rows)

def small_ipinyou_run(folder: Path, parity_rows: int = 500) -> tuple[Path, Path]:
    """(log, run folder): `folder`/ipy.txt, 20,000 synthetic iPinYou-shaped rows (seed 5), and `folder`/ipy, experiment
    DCN_test (1 epoch) trained on them and exported by rtb_dcn.run.train_frame; each made only when missing. Training
    runs in a child process, so TensorFlow's threads and memory stay out of the benchmark's own (load-generating) process."""
    import multiprocessing as mp
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    data, run = folder / 'ipy.txt', folder / 'ipy'
    if not data.exists() or not (run / 'model.onnx').exists() or not (run / 'saved_model').is_dir():
        p = mp.get_context('spawn').Process(target=_train_small_ipinyou_run, args=(folder, parity_rows))
        p.start(); p.join()
        if p.exitcode: raise SystemExit(f"training the small iPinYou run in {folder} failed (exit code {p.exitcode})")
    return data, run

def command() -> str:
    "The command line that is running, as one could retype it from the repository root."
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    return ' '.join(shlex.quote(a) for a in [exe, os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])

_START = (time.strftime('%Y-%m-%dT%H:%M:%S%z'), os.getloadavg()[0])

def machine() -> dict:
    "The machine and how busy it was (1-minute load average when the script started and now; 2 cores here, shared)."
    import tensorflow as tf
    return dict(python=platform.python_version(), machine=platform.machine(), cpus=os.cpu_count(), tensorflow=tf.__version__,
                started=_START[0], load_avg_at_start=_START[1], finished=time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                load_avg_at_end=os.getloadavg()[0])

def calibration() -> dict:
    "How fast this machine is, so absolute numbers can be compared across machines: float32 matmul GFLOP/s (numpy,\n"
    "n=1024, best of 5) and a pure-Python loop (ns per iteration of `for i in range(n): x += i`, best of 5)."
    import numpy as np
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32); a @ a
    mm = []
    for _ in range(5):
        t = time.perf_counter(); a @ a; mm.append(2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9)
    def loop(n=2_000_000):
        x, t = 0, time.perf_counter()
        for i in range(n): x += i
        return (time.perf_counter() - t) / n * 1e9
    return {'matmul_f32_gflops': round(max(mm), 1), 'python_loop_ns': round(min(loop() for _ in range(5)), 2)}


def repo_relative(obj):
    "`obj` with every string path under the repository root made relative to it (reports carry no machine paths)."
    root = str(ROOT) + os.sep
    if isinstance(obj, str): return obj.replace(root, '')
    if isinstance(obj, Path): return repo_relative(str(obj))
    if isinstance(obj, dict): return {k: repo_relative(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)): return [repo_relative(v) for v in obj]
    return obj

def dump_json(path: Path, obj: dict) -> Path:
    "Write `obj` as indented JSON with repository-relative paths (every JSON a benchmark writes goes through here)."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(repo_relative(obj), indent=1, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)) + '\n')
    return path

def write_json(name: str, obj: dict) -> Path:
    "dump_json into the benchmarks' output folder."
    return dump_json(OUT / name, obj)

def log(*a):
    print(*a, file=sys.stderr, flush=True)

def rel(p) -> str:
    "A path relative to the repository root when it is inside it."
    p = Path(p)
    try: return str(p.resolve().relative_to(ROOT))
    except ValueError: return str(p)
