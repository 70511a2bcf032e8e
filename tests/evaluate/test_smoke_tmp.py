from convssl.cli import main

def test_smoke(banking_slice, clinc_slice, sgd_slice, tiny_bert, tiny_gpt2, minilm_path, tmp_path):
    import time
    t=time.time()
    rc = main(["evaluate", "--model", str(minilm_path), "--model", str(tiny_gpt2), "--task", f"intent:{banking_slice}",
               "--task", f"oos:{clinc_slice}", "--task", f"response:{sgd_slice}", "--task", f"ppl:{sgd_slice}",
               "--out", "/tmp/evsmoke/out"])
    print("took", time.time()-t)
    assert rc == 0
