import ctypes
import sys

import llama_cpp

FT = {"q5_k_m": 17, "q3_k_m": 12, "q2_k": 10}
src, dst, ft = sys.argv[1], sys.argv[2], sys.argv[3]
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = FT[ft]
p.allow_requantize = True
p.nthread = 1
assert llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)) == 0
print("ok", dst)
