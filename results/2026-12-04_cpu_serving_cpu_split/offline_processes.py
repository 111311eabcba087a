"""The served model offline: `python offline_processes.py THREADS [SLEEP_S]` times infer at batch 4 over
256 SST-2 dev texts (featurized first), packed padding, seq 64, with THREADS torch threads, after SLEEP_S.
Two at once: `python offline_processes.py 1 2 & python offline_processes.py 1 2; wait`."""
import sys, time, torch
from bertg4.serve.app import DEFAULTS, load_predictor
from bertg4.serve import loadtest as L
th=int(sys.argv[1]); torch.set_num_threads(th)
spec={**DEFAULTS,"model":"embedded","task":"SST","seq_length":64,"padding":"packed","threads":th}
pred=load_predictor(spec)
texts=L.traffic("sst2")
batch=pred.featurize(texts[:256])
pred.infer(batch[:8],batch_size=4,padding="packed")
time.sleep(float(sys.argv[2]) if len(sys.argv)>2 else 0)
t0=time.perf_counter()
for _ in range(4): pred.infer(batch,batch_size=4,padding="packed")
print(th, "threads:", round(4*256/(time.perf_counter()-t0),1), "texts/s", flush=True)
