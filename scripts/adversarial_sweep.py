"""Adversarial sweep over every verb, as a user would try it (not part of the test suite: ~20 min).

Usage: ``.venv/bin/python scripts/adversarial_sweep.py [VERB ...]`` (default: every verb), from
the repository root; prints one ``FAIL`` line per failing case and a JSON summary.

For every verb: its good invocation on small real fixtures, every ``--set`` key its ``--help``
lists with three values drawn from NaN, ±inf, -1, 0, ±1e300, 1e8, a string, a list, a bool and a
table, a malformed and an unknown-key ``--config``, outputs that are an input, ``/dev/null``,
under ``/proc``, a 300-character name, under a file or the config file, and inputs that are
missing, text or truncated. Each case runs in a fresh folder holding copies of its inputs and
passes when it exits 0 or 2, prints one line and no traceback on 2, leaves its inputs' bytes
unchanged, leaves nothing on a refusal and nothing undeclared on success, and ends within 90 s.
"""
import hashlib, json, os, pathlib, shutil, subprocess, sys, random, tempfile
ROOT = pathlib.Path(__file__).resolve().parents[1]; NS = str(ROOT / ".venv/bin/neurosim"); DATA = ROOT / "tests/data"
BASE = pathlib.Path(tempfile.mkdtemp(prefix="neurosim-sweep-"))
FIX = BASE / "fix"


def make_fixtures() -> None:
    """Small real inputs: the repository's test recordings, a tiny synthetic dataset, a run
    trained on it for one batch, its evaluation, an int8 digits run and a short video."""
    import numpy as np
    import cv2

    FIX.mkdir(parents=True)
    for src, name in [("scene_davis346.npz", "in.npz"), ("scene_sequence.h5", "seq.h5"), ("dv_davis346.aedat4", "rec.aedat4")]:
        shutil.copy(DATA / src, FIX / name)
    (FIX / "bad.toml").write_text("not toml [[[\n")
    (FIX / "unknown.toml").write_text("no_such_key = 1\n")
    (FIX / "text.txt").write_text("hello\n")
    (FIX / "trunc.h5").write_bytes((FIX / "seq.h5").read_bytes()[:3000])
    (FIX / "trunc.npz").write_bytes((FIX / "in.npz").read_bytes()[:2000])
    w = cv2.VideoWriter(str(FIX / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for k in range(10):
        f = np.zeros((48, 64, 3), np.uint8)
        f[10:20, 5 + 3 * k:15 + 3 * k] = 255
        w.write(f)
    w.release()
    for argv in (["data", "synth", "-o", "ds", "--sequences", "2", "--size", "96x72", "--frames", "40", "--test-fraction", "0",
                  "--set", "synth.n_distractors=0", "--set", "synth.target_size_px=[10,12]"],
                 ["train", "--dataset", "ds", "-o", "run", "--set", "epochs=1", "--set", "batches_per_epoch=1", "--set", "batch_size=2"],
                 ["eval", "run", "--dataset", "ds", "--split", "all", "--max-frames", "3", "--variants", "full,ann_only",
                  "--baselines", "none", "-o", "ev"],
                 ["quant", "train-digits", "-o", "q", "--set", "train_images=32", "--set", "epochs=1"],
                 ["scatter", "simulate", "-o", "sp.safetensors", "--set", "objects=shapes", "--set", "count=40"],
                 ["scatter", "train", "sp.safetensors", "-o", "srun", "--set", "arch=fcn", "--set", "steps=5"]):
        subprocess.run([NS, *argv, "-q"], cwd=FIX, check=True)

def snap(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}

def case(name, argv, files=(), outputs=(), timeout=90):
    work = BASE / "work" / name.replace("/", "_")[:100]
    shutil.rmtree(work, ignore_errors=True); work.mkdir(parents=True)
    for f in files:
        src = pathlib.Path(f)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / src.name)
    before = snap(work)
    argv = [a.replace("{w}", str(work)) for a in argv]
    try:
        p = subprocess.run([NS, *argv, "-q"], cwd=work, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return name, "HANG", ""
    after = snap(work)
    bad = []
    if p.returncode not in (0, 2): bad.append(f"rc {p.returncode}")
    if "Traceback" in p.stderr: bad.append("traceback")
    changed = [k for k in before if after.get(k) != before[k]]
    if changed: bad.append(f"changed {changed}")
    new = set(after) - set(before)
    if p.returncode == 2:
        if len(p.stderr.strip().splitlines()) != 1: bad.append("not one line")
        if new: bad.append(f"left {sorted(new)[:3]}")
    elif p.returncode == 0:
        stray = [n for n in new if not any(n == o or n.startswith(o + "/") for o in outputs)]
        if stray: bad.append(f"stray {stray[:3]}")
    shutil.rmtree(work, ignore_errors=True)
    return name, ";".join(bad) or "ok", p.stderr.strip().splitlines()[-1][:200] if p.stderr.strip() else ""

VALUES = ["nan", "inf", "-inf", "-1", "0", "1e300", "-1e300", "100000000", '"x"', "[1,2]", "true", "{}"]

F = FIX
# verb: (argv template with IN and OUT, [files], primary input name or None, output name or None)
VERBS = {
    "events simulate": (["events", "simulate", "{w}/in.npz", "-o", "{w}/OUT.h5"], ["in.npz"], "in.npz", "OUT.h5"),
    "events simulate mp4": (["events", "simulate", "{w}/v.mp4", "-o", "{w}/OUT.h5"], ["v.mp4"], "v.mp4", "OUT.h5"),
    "events calibrate": (["events", "calibrate", "{w}/in.npz", "-o", "{w}/OUT.toml", "--passes", "1"], ["in.npz"], "in.npz", "OUT.toml"),
    "events compare": (["events", "compare", "{w}/seq.h5", "{w}/in.npz"], ["seq.h5", "in.npz"], "seq.h5", None),
    "events info": (["events", "info", "{w}/rec.aedat4"], ["rec.aedat4"], "rec.aedat4", None),
    "events render": (["events", "render", "{w}/seq.h5", "-o", "{w}/OUT.mp4"], ["seq.h5"], "seq.h5", "OUT.mp4"),
    "data synth": (["data", "synth", "-o", "{w}/OUT", "--sequences", "1", "--size", "64x48", "--frames", "8"], [], None, "OUT"),
    "data build": (["data", "build", "{w}/v.mp4", "-o", "{w}/OUT"], ["v.mp4"], "v.mp4", "OUT"),
    "data import": (["data", "import", "{w}/rec.aedat4", "-o", "{w}/OUT.h5"], ["rec.aedat4"], "rec.aedat4", "OUT.h5"),
    "data info": (["data", "info", "{w}/ds"], ["ds"], "ds", None),
    "train": (["train", "--dataset", "{w}/ds", "-o", "{w}/OUT", "--set", "epochs=1", "--set", "batches_per_epoch=1", "--set", "batch_size=2"], ["ds"], "ds", "OUT"),
    "tune": (["tune", "{w}/run", "--dataset", "{w}/ds", "-o", "{w}/OUT", "--alphas", "0.3", "--holds", "1", "--ann-temperatures", "1"], ["run", "ds"], "run", "OUT"),
    "eval": (["eval", "{w}/run", "--dataset", "{w}/ds", "--split", "all", "--max-frames", "3", "--baselines", "none", "-o", "{w}/OUT"], ["run", "ds"], "run", "OUT"),
    "compare": (["compare", "{w}/ev", "{w}/ev", "--base", "full", "-o", "{w}/OUT"], ["ev"], "ev", "OUT"),
    "track": (["track", "{w}/run", "{w}/seq.h5", "-o", "{w}/OUT"], ["run", "seq.h5"], "seq.h5", "OUT"),
    "export": (["export", "{w}/run", "-o", "{w}/OUT"], ["run"], "run", "OUT"),
    "quant export": (["quant", "export", "{w}/q", "-o", "{w}/OUT"], ["q"], "q", "OUT"),
    "quant train-digits": (["quant", "train-digits", "-o", "{w}/OUT", "--set", "train_images=32", "--set", "epochs=1"], [], None, "OUT"),
    "quant schemes": (["quant", "schemes"], [], None, None),
    "snn crosscheck": (["snn", "crosscheck", "--neurons", "10", "--steps", "20"], [], None, None),
    "chip estimate": (["chip", "estimate", "reference", "--input", "{w}/in.npz", "-o", "{w}/OUT.json"], ["in.npz"], "in.npz", "OUT.json"),
    "chip simulate": (["chip", "simulate", "reference", "{w}/in.npz", "-o", "{w}/OUT.npz"], ["in.npz"], "in.npz", "OUT.npz"),
    "chip map": (["chip", "map", "reference"], [], None, None),
    "demo": (["demo", "-o", "{w}/OUT", "--no-real"], [], None, "OUT"),
    "scatter simulate": (["scatter", "simulate", "-o", "{w}/OUT.safetensors", "--set", "objects=shapes", "--set", "count=20"], [], None, "OUT.safetensors"),
    "scatter train": (["scatter", "train", "{w}/sp.safetensors", "-o", "{w}/OUT", "--set", "arch=fcn", "--set", "steps=3"], ["sp.safetensors"], "sp.safetensors", "OUT"),
    "scatter finetune": (["scatter", "finetune", "{w}/srun", "{w}/sp.safetensors", "-o", "{w}/OUT", "--set", "samples=10", "--set", "steps=3"], ["srun", "sp.safetensors"], "srun", "OUT"),
    "scatter eval": (["scatter", "eval", "{w}/srun", "{w}/sp.safetensors", "-o", "{w}/OUT"], ["srun", "sp.safetensors"], "sp.safetensors", "OUT"),
    "fewshot bench": (["fewshot", "bench", "--set", "episodes=1", "--set", "ways=2", "--set", "shots=[1]", "--set", "bootstrap=10"], [], None, None),
}

def set_keys(verb_argv):
    words = [w for w in verb_argv if not w.startswith("{") and not w.startswith("-")][:2]
    h = subprocess.run([NS, *words, "--help"], capture_output=True, text=True).stdout.replace("\n", " ")
    if "keys and defaults:" not in h: return []
    seg = h.split("keys and defaults:")[1].split("  -")[0]
    import re
    return re.findall(r"([a-z_][a-z0-9_.]*)=", seg)

def cases(verb):
    argv, files, inp, out = VERBS[verb]
    files = [F / f for f in files] + [F / "bad.toml", F / "unknown.toml", F / "text.txt"]
    outs = (out,) if out else ()
    yield f"{verb}/good", argv, files, outs
    rnd = random.Random(verb)
    for k in set_keys(argv):
        for v in rnd.sample(VALUES, 3):
            yield f"{verb}/set {k}={v}", argv + ["--set", f"{k}={v}"], files, outs
    yield f"{verb}/badtoml", argv + ["--config", "{w}/bad.toml"], files, outs
    yield f"{verb}/unknowntoml", argv + ["--config", "{w}/unknown.toml"], files, outs
    if out:
        o = "{w}/" + out
        for what, repl in [("out=in", "{w}/" + (inp or "text.txt")), ("devnull", "/dev/null"), ("proc", "/proc/nsx/y"),
                           ("long", "{w}/" + "x" * 300), ("under file", "{w}/text.txt/x"), ("out=config", "{w}/bad.toml")]:
            yield f"{verb}/{what}", [repl if a == o else a for a in argv], files, outs
    if inp:
        i = "{w}/" + inp
        for what, repl in [("missing", "{w}/nope"), ("text", "{w}/text.txt"), ("trunc", "{w}/trunc.h5"), ("trunc npz", "{w}/trunc.npz")]:
            yield f"{verb}/in {what}", [repl if a == i else a for a in argv], files + [F / "trunc.h5", F / "trunc.npz"], outs

if __name__ == "__main__":
    verbs = sys.argv[1:] or list(VERBS)
    make_fixtures()
    results = []
    for v in verbs:
        for name, argv, files, outs in cases(v):
            r = case(name, argv, files, outs)
            results.append(r)
            if r[1] != "ok":
                print("FAIL", r, flush=True)
    shutil.rmtree(BASE, ignore_errors=True)
    print(json.dumps({"cases": len(results), "failed": sum(r[1] != "ok" for r in results)}))
